//! USS-to-USS bodies of `utm.yaml` (`/uss/v1/...`). Field names are the spec's.

use serde::{Deserialize, Serialize};

use crate::wire::{ConstraintReference, OperationalIntentReference, SubscriptionState, Volume4D};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct OperationalIntentDetails {
    #[serde(default)]
    pub volumes: Vec<Volume4D>,
    #[serde(default)]
    pub off_nominal_volumes: Vec<Volume4D>,
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationalIntent {
    pub reference: OperationalIntentReference,
    pub details: OperationalIntentDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOperationalIntentDetailsResponse {
    pub operational_intent: OperationalIntent,
}

/// A field that may be omitted (it means something: a notification without the entity is a
/// deletion, per `utm.yaml`) but may not be `null`: a `null` is a 400, never read as "absent".
fn present_not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutOperationalIntentDetailsParameters {
    pub operational_intent_id: String,
    #[serde(default, deserialize_with = "present_not_null", skip_serializing_if = "Option::is_none")]
    pub operational_intent: Option<OperationalIntent>,
    pub subscriptions: Vec<SubscriptionState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ConstraintDetails {
    #[serde(default)]
    pub volumes: Vec<Volume4D>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub constraint_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Constraint {
    pub reference: ConstraintReference,
    pub details: ConstraintDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetConstraintDetailsResponse {
    pub constraint: Constraint,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutConstraintDetailsParameters {
    pub constraint_id: String,
    #[serde(default, deserialize_with = "present_not_null", skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    pub subscriptions: Vec<SubscriptionState>,
}
