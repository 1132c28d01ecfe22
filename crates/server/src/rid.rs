//! The DSS endpoints of network Remote ID: ASTM F3411-22a (API 2.1) under `/rid/v2` and
//! F3411-19 (API 1.0) under `/v1`, ISAs and Remote ID subscriptions, over one set of entities.
//! Handlers as everywhere: the scopes before the body, one conversion in, one call into
//! `dss::rid`, one conversion out. Creations answer 200, as both versions' text says (F3548's
//! answer 201).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use dss::rid::{read_scopes, subscription_get_scopes, write_scopes, IsaChange, RidRequest};
use model::rid::RidApi;
use store::Store;

use crate::error::ApiError;
use crate::{body_of, uuid_path, AppState, Authed, Body, St};

const V2: RidApi = RidApi::V22a;
const V1: RidApi = RidApi::V19;

pub(crate) fn routes<S: Store>() -> Router<Arc<AppState<S>>> {
    v2_routes::<S>().merge(v1_routes::<S>())
}

fn v2_routes<S: Store>() -> Router<Arc<AppState<S>>> {
    let isa = "/rid/v2/dss/identification_service_areas";
    let sub = "/rid/v2/dss/subscriptions";
    Router::new()
        .route(isa, get(search_isas::<S>))
        .route(&format!("{isa}/{{id}}"), get(get_isa::<S>).put(create_isa::<S>))
        .route(&format!("{isa}/{{id}}/{{version}}"), axum::routing::put(update_isa::<S>).delete(delete_isa::<S>))
        .route(sub, get(search_subscriptions::<S>))
        .route(&format!("{sub}/{{id}}"), get(get_subscription::<S>).put(create_subscription::<S>))
        .route(
            &format!("{sub}/{{id}}/{{version}}"),
            axum::routing::put(update_subscription::<S>).delete(delete_subscription::<S>),
        )
}

#[derive(serde::Deserialize)]
struct SearchQuery {
    area: Option<String>,
    earliest_time: Option<String>,
    latest_time: Option<String>,
}

type SearchParams = Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>;

fn search_params(q: SearchParams) -> Result<SearchQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::Wire(api::WireError::bad(format!("query parameters: {e}"))))
}

fn area_of(q: &SearchQuery) -> Result<geo4d::Footprint, ApiError> {
    let area =
        q.area.as_deref().ok_or_else(|| ApiError::Wire(api::WireError::bad("the `area` parameter is required")))?;
    Ok(api::polygon_string(area)?)
}

fn time_param(value: &Option<String>, name: &str) -> Result<Option<geo4d::Timestamp>, ApiError> {
    value
        .as_ref()
        .map(|v| api::time_from_wire(&api::Time { value: v.clone(), format: "RFC3339".into() }, name))
        .transpose()
        .map_err(ApiError::Wire)
}

fn rid_request(body: Body) -> Result<RidRequest, ApiError> {
    let p: api::RidPutParameters = body_of(body)?;
    Ok(RidRequest { extents: api::rid_volume_from_wire(&p.extents)?, url: p.uss_base_url, api: V2 })
}

fn isa_change(change: &IsaChange) -> api::IsaChangeResponse {
    api::IsaChangeResponse {
        service_area: api::isa_to_wire(&change.isa),
        subscribers: api::rid_subscribers_to_wire(
            change.subscribers.iter().map(|s| (s.url.as_str(), s.subscriptions.as_slice())),
        ),
    }
}

async fn search_isas<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    q: SearchParams,
) -> Result<Json<api::SearchIsasResponse>, ApiError> {
    c.require_any(read_scopes(V2))?;
    let q = search_params(q)?;
    let (earliest, latest) =
        (time_param(&q.earliest_time, "earliest_time")?, time_param(&q.latest_time, "latest_time")?);
    let found = st.dss.search_isas(&c, V2, area_of(&q)?, earliest, latest).await?;
    Ok(Json(api::SearchIsasResponse { service_areas: found.iter().map(api::isa_to_wire).collect() }))
}

async fn get_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<Json<api::GetIsaResponse>, ApiError> {
    c.require_any(read_scopes(V2))?;
    let isa = st.dss.get_isa(&c, V2, uuid_path(&id, "id")?).await?;
    Ok(Json(api::GetIsaResponse { service_area: api::isa_to_wire(&isa) }))
}

async fn create_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<api::IsaChangeResponse>, ApiError> {
    c.require_any(write_scopes(V2))?;
    let id = uuid_path(&id, "id")?;
    Ok(Json(isa_change(&st.dss.put_isa(&c, id, None, rid_request(body)?).await?)))
}

async fn update_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> Result<Json<api::IsaChangeResponse>, ApiError> {
    c.require_any(write_scopes(V2))?;
    let id = uuid_path(&id, "id")?;
    Ok(Json(isa_change(&st.dss.put_isa(&c, id, Some(&version), rid_request(body)?).await?)))
}

async fn delete_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<api::IsaChangeResponse>, ApiError> {
    c.require_any(write_scopes(V2))?;
    Ok(Json(isa_change(&st.dss.delete_isa(&c, V2, uuid_path(&id, "id")?, &version).await?)))
}

async fn search_subscriptions<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    q: SearchParams,
) -> Result<Json<api::SearchRidSubscriptionsResponse>, ApiError> {
    c.require_any(read_scopes(V2))?;
    let q = search_params(q)?;
    let found = st.dss.search_rid_subscriptions(&c, V2, area_of(&q)?).await?;
    Ok(Json(api::SearchRidSubscriptionsResponse {
        subscriptions: found.iter().map(api::rid_subscription_to_wire).collect(),
    }))
}

async fn get_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<Json<api::RidSubscriptionResponse>, ApiError> {
    c.require_any(subscription_get_scopes(V2))?;
    let sub = st.dss.get_rid_subscription(&c, V2, uuid_path(&id, "id")?).await?;
    Ok(Json(api::RidSubscriptionResponse { subscription: api::rid_subscription_to_wire(&sub) }))
}

async fn put_subscription<S: Store>(
    st: &AppState<S>,
    c: &dss::Caller,
    id: &str,
    version: Option<&str>,
    body: Body,
) -> Result<Json<api::PutRidSubscriptionResponse>, ApiError> {
    c.require_any(read_scopes(V2))?;
    let id = uuid_path(id, "id")?;
    let change = st.dss.put_rid_subscription(c, id, version, rid_request(body)?).await?;
    Ok(Json(api::PutRidSubscriptionResponse {
        subscription: api::rid_subscription_to_wire(&change.subscription),
        service_areas: change.service_areas.iter().map(api::isa_to_wire).collect(),
    }))
}

async fn create_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<api::PutRidSubscriptionResponse>, ApiError> {
    put_subscription(&st, &c, &id, None, body).await
}

async fn update_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> Result<Json<api::PutRidSubscriptionResponse>, ApiError> {
    put_subscription(&st, &c, &id, Some(&version), body).await
}

async fn delete_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<api::RidSubscriptionResponse>, ApiError> {
    c.require_any(read_scopes(V2))?;
    let sub = st.dss.delete_rid_subscription(&c, V2, uuid_path(&id, "id")?, &version).await?;
    Ok(Json(api::RidSubscriptionResponse { subscription: api::rid_subscription_to_wire(&sub) }))
}

// ---- F3411-19 ----

fn v1_routes<S: Store>() -> Router<Arc<AppState<S>>> {
    let isa = "/v1/dss/identification_service_areas";
    let sub = "/v1/dss/subscriptions";
    Router::new()
        .route(isa, get(v1_search_isas::<S>))
        .route(&format!("{isa}/{{id}}"), get(v1_get_isa::<S>).put(v1_create_isa::<S>))
        .route(&format!("{isa}/{{id}}/{{version}}"), axum::routing::put(v1_update_isa::<S>).delete(v1_delete_isa::<S>))
        .route(sub, get(v1_search_subscriptions::<S>))
        .route(&format!("{sub}/{{id}}"), get(v1_get_subscription::<S>).put(v1_create_subscription::<S>))
        .route(
            &format!("{sub}/{{id}}/{{version}}"),
            axum::routing::put(v1_update_subscription::<S>).delete(v1_delete_subscription::<S>),
        )
}

fn v1_isa_request(body: Body) -> Result<RidRequest, ApiError> {
    let p: api::IsaParametersV1 = body_of(body)?;
    Ok(RidRequest { extents: api::volume_from_v1(&p.extents)?, url: p.flights_url, api: V1 })
}

fn v1_subscription_request(body: Body) -> Result<RidRequest, ApiError> {
    let p: api::SubscriptionParametersV1 = body_of(body)?;
    // F3411-19 lets a subscriber leave its callbacks empty; the reference DSS stores the ISA
    // callback as the subscription's URL, so one is required here.
    let url = p
        .callbacks
        .identification_service_area_url
        .ok_or_else(|| ApiError::Wire(api::WireError::bad("callbacks.identification_service_area_url is required")))?;
    Ok(RidRequest { extents: api::volume_from_v1(&p.extents)?, url, api: V1 })
}

fn v1_isa_change(change: &IsaChange) -> api::IsaChangeResponseV1 {
    api::IsaChangeResponseV1 {
        service_area: api::isa_to_v1(&change.isa),
        subscribers: api::rid_subscribers_to_wire(
            change.subscribers.iter().map(|s| (s.url.as_str(), s.subscriptions.as_slice())),
        ),
    }
}

async fn v1_search_isas<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    q: SearchParams,
) -> Result<Json<api::SearchIsasResponseV1>, ApiError> {
    c.require_any(read_scopes(V1))?;
    let q = search_params(q)?;
    let (earliest, latest) =
        (time_param(&q.earliest_time, "earliest_time")?, time_param(&q.latest_time, "latest_time")?);
    let found = st.dss.search_isas(&c, V1, area_of(&q)?, earliest, latest).await?;
    Ok(Json(api::SearchIsasResponseV1 { service_areas: found.iter().map(api::isa_to_v1).collect() }))
}

async fn v1_get_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<Json<api::GetIsaResponseV1>, ApiError> {
    c.require_any(read_scopes(V1))?;
    let isa = st.dss.get_isa(&c, V1, uuid_path(&id, "id")?).await?;
    Ok(Json(api::GetIsaResponseV1 { service_area: api::isa_to_v1(&isa) }))
}

async fn v1_create_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<api::IsaChangeResponseV1>, ApiError> {
    c.require_any(write_scopes(V1))?;
    let id = uuid_path(&id, "id")?;
    Ok(Json(v1_isa_change(&st.dss.put_isa(&c, id, None, v1_isa_request(body)?).await?)))
}

async fn v1_update_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> Result<Json<api::IsaChangeResponseV1>, ApiError> {
    c.require_any(write_scopes(V1))?;
    let id = uuid_path(&id, "id")?;
    Ok(Json(v1_isa_change(&st.dss.put_isa(&c, id, Some(&version), v1_isa_request(body)?).await?)))
}

async fn v1_delete_isa<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<api::IsaChangeResponseV1>, ApiError> {
    c.require_any(write_scopes(V1))?;
    Ok(Json(v1_isa_change(&st.dss.delete_isa(&c, V1, uuid_path(&id, "id")?, &version).await?)))
}

async fn v1_search_subscriptions<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    q: SearchParams,
) -> Result<Json<api::SearchSubscriptionsResponseV1>, ApiError> {
    c.require_any(read_scopes(V1))?;
    let q = search_params(q)?;
    let found = st.dss.search_rid_subscriptions(&c, V1, area_of(&q)?).await?;
    Ok(Json(api::SearchSubscriptionsResponseV1 {
        subscriptions: found.iter().map(api::rid_subscription_to_v1).collect(),
    }))
}

async fn v1_get_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
) -> Result<Json<api::SubscriptionResponseV1>, ApiError> {
    c.require_any(subscription_get_scopes(V1))?;
    let sub = st.dss.get_rid_subscription(&c, V1, uuid_path(&id, "id")?).await?;
    Ok(Json(api::SubscriptionResponseV1 { subscription: api::rid_subscription_to_v1(&sub) }))
}

async fn v1_put_subscription<S: Store>(
    st: &AppState<S>,
    c: &dss::Caller,
    id: &str,
    version: Option<&str>,
    body: Body,
) -> Result<Json<api::PutSubscriptionResponseV1>, ApiError> {
    c.require_any(read_scopes(V1))?;
    let id = uuid_path(id, "id")?;
    let change = st.dss.put_rid_subscription(c, id, version, v1_subscription_request(body)?).await?;
    Ok(Json(api::PutSubscriptionResponseV1 {
        subscription: api::rid_subscription_to_v1(&change.subscription),
        service_areas: change.service_areas.iter().map(api::isa_to_v1).collect(),
    }))
}

async fn v1_create_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<api::PutSubscriptionResponseV1>, ApiError> {
    v1_put_subscription(&st, &c, &id, None, body).await
}

async fn v1_update_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> Result<Json<api::PutSubscriptionResponseV1>, ApiError> {
    v1_put_subscription(&st, &c, &id, Some(&version), body).await
}

async fn v1_delete_subscription<S: Store>(
    State(st): St<S>,
    Authed(c): Authed,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<api::SubscriptionResponseV1>, ApiError> {
    c.require_any(read_scopes(V1))?;
    let sub = st.dss.delete_rid_subscription(&c, V1, uuid_path(&id, "id")?, &version).await?;
    Ok(Json(api::SubscriptionResponseV1 { subscription: api::rid_subscription_to_v1(&sub) }))
}
