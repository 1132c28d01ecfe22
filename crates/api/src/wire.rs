//! Request and response bodies of the DSS endpoints. Field names are the spec's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Time {
    pub value: String,
    pub format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Altitude {
    pub value: f64,
    pub reference: String,
    pub units: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatLngPoint {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Polygon {
    pub vertices: Vec<LatLngPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Radius {
    pub value: f64,
    pub units: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Circle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<LatLngPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius: Option<Radius>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume3D {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline_circle: Option<Circle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline_polygon: Option<Polygon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_lower: Option<Altitude>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_upper: Option<Altitude>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume4D {
    pub volume: Volume3D,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_start: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_end: Option<Time>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_of_interest: Option<Volume4D>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImplicitSubscriptionParameters {
    pub uss_base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_for_constraints: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutOperationalIntentReferenceParameters {
    pub extents: Vec<Volume4D>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    pub state: String,
    pub uss_base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_subscription: Option<ImplicitSubscriptionParameters>,
    /// InterUSS extension (not in utm.yaml): a UUIDv7 whose time is within 5 minutes of now;
    /// the new OVN is then `{entityid}_{requested_ovn_suffix}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_ovn_suffix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutConstraintReferenceParameters {
    pub extents: Vec<Volume4D>,
    pub uss_base_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutSubscriptionParameters {
    pub extents: Volume4D,
    pub uss_base_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_for_operational_intents: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_for_constraints: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetUssAvailabilityStatusParameters {
    /// `""` when omitted, the default `utm.yaml` gives it (before the first change).
    #[serde(default)]
    pub old_version: String,
    pub availability: String,
}

// ---- responses ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationalIntentReference {
    pub id: String,
    pub manager: String,
    pub uss_availability: String,
    pub version: i32,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovn: Option<String>,
    pub time_start: Time,
    pub time_end: Time,
    pub uss_base_url: String,
    pub subscription_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConstraintReference {
    pub id: String,
    pub manager: String,
    pub uss_availability: String,
    pub version: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovn: Option<String>,
    pub time_start: Time,
    pub time_end: Time,
    pub uss_base_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub subscription_id: String,
    pub notification_index: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberToNotify {
    pub subscriptions: Vec<SubscriptionState>,
    pub uss_base_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub version: String,
    pub notification_index: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_start: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub time_end: Option<Time>,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
    pub implicit_subscription: bool,
    pub dependent_operational_intents: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryOperationalIntentReferenceResponse {
    pub operational_intent_references: Vec<OperationalIntentReference>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOperationalIntentReferenceResponse {
    pub operational_intent_reference: OperationalIntentReference,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeOperationalIntentReferenceResponse {
    pub subscribers: Vec<SubscriberToNotify>,
    pub operational_intent_reference: OperationalIntentReference,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryConstraintReferencesResponse {
    pub constraint_references: Vec<ConstraintReference>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetConstraintReferenceResponse {
    pub constraint_reference: ConstraintReference,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeConstraintReferenceResponse {
    pub subscribers: Vec<SubscriberToNotify>,
    pub constraint_reference: ConstraintReference,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuerySubscriptionsResponse {
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetSubscriptionResponse {
    pub subscription: Subscription,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutSubscriptionResponse {
    pub subscription: Subscription,
    /// Present only when the subscription notifies for operational intents (utm.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operational_intent_references: Option<Vec<OperationalIntentReference>>,
    /// Present only when the subscription notifies for constraints (utm.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_references: Option<Vec<ConstraintReference>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteSubscriptionResponse {
    pub subscription: Subscription,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AirspaceConflictResponse {
    pub message: String,
    pub missing_operational_intents: Vec<OperationalIntentReference>,
    pub missing_constraints: Vec<ConstraintReference>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UssAvailabilityStatus {
    pub uss: String,
    pub availability: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UssAvailabilityStatusResponse {
    pub version: String,
    pub status: UssAvailabilityStatus,
}

/// `ExchangeRecord` of a report; parsed to validate a report before it is archived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeRecord {
    pub url: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    pub recorder_role: String,
    pub request_time: Time,
    /// Listed as required by the schema without a type; echoed as sent ("" when absent).
    #[serde(default)]
    pub request_source: serde_json::Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_body: String,
    #[serde(default, deserialize_with = "no_null_i32", skip_serializing_if = "Option::is_none")]
    pub response_code: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    pub exchange: ExchangeRecord,
}

/// An optional integer that may be omitted but not set to `null` (it is not an object field).
fn no_null_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    i32::deserialize(d).map(Some)
}
