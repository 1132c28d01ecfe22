//! A development OAuth 2.0 token server that the DSS and every participant can trust. It grants
//! any client what it asks for, so it is for local development and tests only.
//!
//! `GET /token?grant_type=client_credentials&sub=...&scope=...&intended_audience=...` (the
//! request the open-source DSS's development token server takes) and the standard
//! `POST /token` form (`grant_type`, `client_id`, `scope`, `audience`) both answer
//! `{"access_token": ..., "token_type": "Bearer", "expires_in": 3600}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub struct TokenServer {
    key: EncodingKey,
    alg: Algorithm,
    public_pem: Option<String>,
}

/// Lifetime of issued tokens (the standard allows at most one hour).
const TTL_S: i64 = 3600;

impl TokenServer {
    /// `private_pem`: an EC P-256 key (tokens are ES256) or an RSA key (RS256).
    pub fn new(private_pem: &[u8], public_pem: Option<String>) -> Result<Self, String> {
        if let Ok(key) = EncodingKey::from_ec_pem(private_pem) {
            return Ok(Self { key, alg: Algorithm::ES256, public_pem });
        }
        EncodingKey::from_rsa_pem(private_pem)
            .map(|key| Self { key, alg: Algorithm::RS256, public_pem })
            .map_err(|_| "the key is neither a PEM EC P-256 nor an RSA private key".to_owned())
    }

    fn issue(&self, params: &HashMap<String, String>) -> Response {
        let get = |names: &[&str]| names.iter().find_map(|n| params.get(*n).filter(|v| !v.is_empty()).cloned());
        if get(&["grant_type"]).is_some_and(|g| g != "client_credentials") {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "unsupported_grant_type"})))
                .into_response();
        }
        let Some(sub) = get(&["sub", "client_id"]) else {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "invalid_request", "error_description": "sub or client_id is required"}))).into_response();
        };
        let Some(aud) = get(&["intended_audience", "audience", "aud"]) else {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "invalid_request", "error_description": "intended_audience (or audience) is required"}))).into_response();
        };
        let scope = get(&["scope"]).unwrap_or_default();
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": get(&["issuer"]).unwrap_or_else(|| "deconflict-auth".into()),
            "sub": sub, "aud": aud, "scope": scope,
            "iat": now, "nbf": now, "exp": now + TTL_S, "jti": uuid::Uuid::new_v4().to_string(),
        });
        match jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.key) {
            Ok(token) => Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": TTL_S}))
                .into_response(),
            Err(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e.to_string()}))).into_response()
            }
        }
    }
}

pub fn app(server: Arc<TokenServer>) -> Router {
    Router::new()
        .route(
            "/token",
            get(|State(s): State<Arc<TokenServer>>, Query(q): Query<HashMap<String, String>>| async move { s.issue(&q) })
                .post(|State(s): State<Arc<TokenServer>>, Form(f): Form<HashMap<String, String>>| async move { s.issue(&f) }),
        )
        .route(
            "/public-key.pem",
            get(|State(s): State<Arc<TokenServer>>| async move {
                match &s.public_pem {
                    Some(p) => p.clone().into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .route("/healthy", get(|| async { "ok" }))
        .with_state(server)
}
