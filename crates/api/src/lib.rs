//! ASTM F3548-21 wire types, with field names verbatim from `utm.yaml`, and their conversion to
//! and from the domain (`model`, `geo4d`, `dss` request and view types).
//!
//! Converting wire to domain is where bad input becomes a precise error ([`WireError`]) that
//! names the offending field. Unknown fields are ignored everywhere, as the standard requires,
//! and `null` is accepted wherever a field may be omitted.

mod convert;
mod out;
mod rid_uss;
mod rid_v1;
mod rid_v2;
mod uss_wire;
mod wire;

pub use convert::*;
pub use out::{ConflictOut, ConstraintsOut, IntentsOut, JsonOut};
pub use rid_uss::*;
pub use rid_v1::*;
pub use rid_v2::*;
pub use uss_wire::*;
pub use wire::*;

/// Input the DSS cannot accept; `too_large` maps to 413, everything else to 400.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub message: String,
    pub too_large: bool,
}

impl WireError {
    pub fn bad(message: impl Into<String>) -> Self {
        Self { message: message.into(), too_large: false }
    }
    pub(crate) fn at(field: &str, e: geo4d::GeoError) -> Self {
        Self { message: format!("{field}: {e}"), too_large: e.is_too_large() }
    }
    /// The same error answered 400 whatever it is (where the reference DSS makes a too-large
    /// area a bad request rather than a 413).
    pub fn as_bad_request(self) -> Self {
        Self { too_large: false, ..self }
    }
}

/// Parses a JSON body, naming the path of the first field that does not fit.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.is_empty() {
        return Err(WireError::bad("the request body is empty; a JSON object is required"));
    }
    // The fast path parses without tracking paths; only a body that fails is parsed again to
    // name the offending field.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            WireError::bad(format!("malformed JSON body: {inner}"))
        } else {
            WireError::bad(format!("malformed JSON body at `{path}`: {inner}"))
        }
    })?;
    // The fast path failed; if the value itself parsed, what is left is trailing bytes.
    de.end().map_err(|e| WireError::bad(format!("malformed JSON body: unexpected data after the JSON value ({e})")))?;
    Ok(parsed)
}

/// Parses an entity or subscription id from a path; the standard requires UUIDv4.
pub fn parse_uuid_v4(s: &str, what: &str) -> Result<uuid::Uuid, WireError> {
    match uuid::Uuid::parse_str(s) {
        Ok(id) if id.get_version_num() == 4 && s.len() == 36 && id.get_variant() == uuid::Variant::RFC4122 => Ok(id),
        _ => Err(WireError::bad(format!(
            "invalid {what} `{s}`: a UUIDv4 like 03e5572a-f733-49af-bc14-8a18bd53ee39 is required"
        ))),
    }
}

/// A report (`ErrorReport`, for `POST /dss/v1/reports` and `POST /uss/v1/reports`) as the
/// schema defines it, validated: `exchange` with its required fields, `recorder_role` `Client`
/// or `Server`, readable times. Unknown fields are dropped here (the caller may archive the body
/// as sent); the answer carries only the schema's fields.
pub fn parse_error_report(body: &[u8]) -> Result<ErrorReport, WireError> {
    let mut report: ErrorReport = parse_json(body)?;
    if report.exchange.request_source.is_null() {
        report.exchange.request_source = serde_json::Value::String(String::new());
    }
    if !matches!(report.exchange.recorder_role.as_str(), "Client" | "Server") {
        return Err(WireError::bad("exchange.recorder_role must be Client or Server"));
    }
    time_from_wire(&report.exchange.request_time, "exchange.request_time")?;
    if let Some(t) = &report.exchange.response_time {
        time_from_wire(t, "exchange.response_time")?;
    }
    Ok(report)
}
