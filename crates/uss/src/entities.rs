//! What the participant keeps, in domain terms, and the one conversion of each to and from the
//! wire form it is stored and served in.
//!
//! Records arrive from three edges (the operator, the DSS, peers) and each is converted and
//! validated once there ([`crate::domain::Reference`] for the DSS's answers, [`verify_intent`]
//! and [`verify_constraint`] for peers' details); from then on the participant works on these
//! types. Wire forms are produced only to serve (`to_wire`), to store (`to_record`) or to send.

use api::OperationalIntent as WireIntent;
use geo4d::{Timestamp, Volume4D};
use model::OperationalIntentState;
use serde::{Deserialize, Serialize};

use crate::domain::{Kind, Reference};

/// One delivery of a notification to a subscriber, as the operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    pub uss_base_url: String,
    /// HTTP status of the last attempt, or 0 when the peer could not be reached.
    pub status: u16,
    pub acknowledged: bool,
    /// Why the last attempt failed, empty when acknowledged.
    pub detail: String,
    /// Attempts made so far (failed deliveries are retried with backoff for a bounded time).
    #[serde(default = "one")]
    pub attempts: u32,
    /// Whether another attempt is scheduled.
    #[serde(default)]
    pub retrying: bool,
    /// The first attempt is under way (notifications go out after the change is answered).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sending: bool,
}

impl Delivery {
    /// A delivery just started: no attempt finished yet.
    pub fn sending(uss_base_url: &str) -> Self {
        Self {
            uss_base_url: uss_base_url.to_owned(),
            status: 0,
            acknowledged: false,
            detail: "being sent".into(),
            attempts: 0,
            retrying: false,
            sending: true,
        }
    }
}

fn one() -> u32 {
    1
}

/// An operational intent this participant manages: the DSS's reference as last written
/// (with our OVN) and the full details.
#[derive(Debug, Clone)]
pub struct OwnIntent {
    pub reference: Reference,
    pub state: OperationalIntentState,
    pub priority: i32,
    pub volumes: Vec<Volume4D>,
    pub off_nominal_volumes: Vec<Volume4D>,
    pub notified: Vec<Delivery>,
}

/// The stored form of an own intent (the details as served, and the deliveries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnIntentRecord {
    pub intent: WireIntent,
    #[serde(default)]
    pub notified: Vec<Delivery>,
}

impl OwnIntent {
    /// Our intent as the DSS now references it, in `state`, with these details.
    pub fn new(mut reference: Reference, state: OperationalIntentState, priority: i32, volumes: Vec<Volume4D>) -> Self {
        reference.state = Some(state);
        OwnIntent { reference, state, priority, volumes, off_nominal_volumes: vec![], notified: vec![] }
    }
    /// The same, with off-nominal volumes.
    pub fn with_off_nominal(mut self, off_nominal: Vec<Volume4D>) -> Self {
        self.off_nominal_volumes = off_nominal;
        self
    }
    pub fn id(&self) -> &str {
        &self.reference.id
    }
    pub fn ovn(&self) -> &str {
        self.reference.ovn_text()
    }
    /// Every volume, nominal then off-nominal.
    pub fn all_volumes(&self) -> impl Iterator<Item = &Volume4D> {
        self.volumes.iter().chain(&self.off_nominal_volumes)
    }
    /// The details as peers are served them.
    pub fn to_wire(&self) -> WireIntent {
        WireIntent {
            reference: self.reference.to_intent_wire(),
            details: api::OperationalIntentDetails {
                volumes: api::extents_to_wire(&self.volumes),
                off_nominal_volumes: api::extents_to_wire(&self.off_nominal_volumes),
                priority: self.priority,
            },
        }
    }
    pub fn to_record(&self) -> OwnIntentRecord {
        OwnIntentRecord { intent: self.to_wire(), notified: self.notified.clone() }
    }
    pub fn from_record(r: OwnIntentRecord) -> Result<Self, String> {
        let reference = Reference::from_intent_wire(&r.intent.reference);
        let state = reference.state.ok_or_else(|| format!("unknown state `{}`", r.intent.reference.state))?;
        Ok(OwnIntent {
            reference,
            state,
            priority: r.intent.details.priority,
            volumes: volumes_from_wire(&r.intent.details.volumes, "volumes")?,
            off_nominal_volumes: volumes_from_wire(&r.intent.details.off_nominal_volumes, "off_nominal_volumes")?,
            notified: r.notified,
        })
    }
    /// What the planner knows of it.
    pub fn to_planner(&self) -> planner::KnownIntent {
        planner::KnownIntent {
            id: self.reference.id.clone(),
            manager: self.reference.manager.clone(),
            state: self.state,
            priority: self.priority,
            volumes: self.all_volumes().cloned().collect(),
        }
    }
}

/// A constraint this participant manages.
#[derive(Debug, Clone)]
pub struct OwnConstraint {
    pub reference: Reference,
    pub volumes: Vec<Volume4D>,
    pub notified: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnConstraintRecord {
    pub constraint: api::Constraint,
    #[serde(default)]
    pub notified: Vec<Delivery>,
}

impl OwnConstraint {
    pub fn to_wire(&self) -> api::Constraint {
        constraint_wire(&self.reference, &self.volumes)
    }
    pub fn to_record(&self) -> OwnConstraintRecord {
        OwnConstraintRecord { constraint: self.to_wire(), notified: self.notified.clone() }
    }
    pub fn from_record(r: OwnConstraintRecord) -> Result<Self, String> {
        Ok(OwnConstraint {
            volumes: volumes_from_wire(&r.constraint.details.volumes, "volumes")?,
            reference: Reference::from_constraint_wire(&r.constraint.reference),
            notified: r.notified,
        })
    }
    pub fn to_planner(&self) -> planner::KnownConstraint {
        planner::KnownConstraint {
            id: self.reference.id.clone(),
            manager: self.reference.manager.clone(),
            volumes: self.volumes.clone(),
        }
    }
}

fn constraint_wire(reference: &Reference, volumes: &[Volume4D]) -> api::Constraint {
    api::Constraint {
        reference: reference.to_constraint_wire(),
        details: api::ConstraintDetails {
            volumes: api::extents_to_wire(volumes),
            constraint_type: Some("Restricted".into()),
        },
    }
}

/// An entity of ours that the DSS references: what the generic steps of a change (record,
/// notify, end) need to know of an own intent or constraint.
pub trait OwnEntity: Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn reference(&self) -> &Reference;
    fn notified_mut(&mut self) -> &mut Vec<Delivery>;
    /// The stored form, as JSON.
    fn record_json(&self) -> Result<String, serde_json::Error>;
    /// The details as peers are served them, as JSON.
    fn details_json(&self) -> serde_json::Value;
    /// One line for the operator's feed on what it now is.
    fn describe(&self) -> String;
}

impl OwnEntity for OwnIntent {
    const KIND: Kind = Kind::Intent;
    fn describe(&self) -> String {
        let r = &self.reference;
        format!(
            "{} operation {} is {} (version {}, priority {})",
            r.manager,
            r.id,
            self.state.as_str(),
            r.version,
            self.priority
        )
    }
    fn reference(&self) -> &Reference {
        &self.reference
    }
    fn notified_mut(&mut self) -> &mut Vec<Delivery> {
        &mut self.notified
    }
    fn record_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.to_record())
    }
    fn details_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_wire()).unwrap_or_default()
    }
}

impl OwnEntity for OwnConstraint {
    const KIND: Kind = Kind::Constraint;
    fn describe(&self) -> String {
        let r = &self.reference;
        format!("{} published restricted zone {} (version {})", r.manager, r.id, r.version)
    }
    fn reference(&self) -> &Reference {
        &self.reference
    }
    fn notified_mut(&mut self) -> &mut Vec<Delivery> {
        &mut self.notified
    }
    fn record_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.to_record())
    }
    fn details_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_wire()).unwrap_or_default()
    }
}

/// The body of a notification to one subscriber of `kind` entity `id`: its details as served,
/// or none for its removal, and the subscriptions it is sent for (the shape of `utm.yaml`'s
/// `PutOperationalIntentDetailsParameters` and `PutConstraintDetailsParameters`).
pub fn notification_body(
    kind: Kind,
    id: &str,
    details: Option<serde_json::Value>,
    subscriptions: Vec<api::SubscriptionState>,
) -> serde_json::Value {
    let (id_field, entity_field) = match kind {
        Kind::Intent => ("operational_intent_id", "operational_intent"),
        Kind::Constraint => ("constraint_id", "constraint"),
    };
    let mut body = serde_json::Map::new();
    body.insert(id_field.into(), id.into());
    if let Some(details) = details {
        body.insert(entity_field.into(), details);
    }
    body.insert("subscriptions".into(), serde_json::to_value(subscriptions).unwrap_or_default());
    serde_json::Value::Object(body)
}

/// Another manager's operational intent, with details verified against the DSS's reference
/// (same id, manager and version, an OVN, times within the reference's bounds).
#[derive(Debug, Clone)]
pub struct KnownIntent {
    /// The reference as the details carried it (with its manager's OVN).
    pub reference: Reference,
    pub state: OperationalIntentState,
    pub priority: i32,
    pub volumes: Vec<Volume4D>,
    pub off_nominal_volumes: Vec<Volume4D>,
}

impl KnownIntent {
    pub fn to_planner(&self) -> planner::KnownIntent {
        planner::KnownIntent {
            id: self.reference.id.clone(),
            manager: self.reference.manager.clone(),
            state: self.state,
            priority: self.priority,
            volumes: self.volumes.iter().chain(&self.off_nominal_volumes).cloned().collect(),
        }
    }
    /// The details as their manager served them (stored in the cache, shown to the operator).
    pub fn to_wire(&self) -> WireIntent {
        let mut reference = self.reference.to_intent_wire();
        reference.state = self.state.as_str().to_owned();
        WireIntent {
            reference,
            details: api::OperationalIntentDetails {
                volumes: api::extents_to_wire(&self.volumes),
                off_nominal_volumes: api::extents_to_wire(&self.off_nominal_volumes),
                priority: self.priority,
            },
        }
    }
    /// A cached copy read back: verified against its own reference (it was verified against
    /// the DSS's when written).
    pub fn from_record(w: WireIntent) -> Result<Self, String> {
        verify_intent(&Reference::from_intent_wire(&w.reference), w)
    }
}

/// Another manager's constraint, verified like [`KnownIntent`].
#[derive(Debug, Clone)]
pub struct KnownConstraint {
    pub reference: Reference,
    pub volumes: Vec<Volume4D>,
}

impl KnownConstraint {
    pub fn to_planner(&self) -> planner::KnownConstraint {
        planner::KnownConstraint {
            id: self.reference.id.clone(),
            manager: self.reference.manager.clone(),
            volumes: self.volumes.clone(),
        }
    }
    pub fn to_wire(&self) -> api::Constraint {
        constraint_wire(&self.reference, &self.volumes)
    }
    pub fn from_record(w: api::Constraint) -> Result<Self, String> {
        verify_constraint(&Reference::from_constraint_wire(&w.reference), w)
    }
}

fn volumes_from_wire(vols: &[api::Volume4D], field: &str) -> Result<Vec<Volume4D>, String> {
    vols.iter()
        .enumerate()
        .map(|(i, v)| api::volume_from_wire(v, &format!("{field}[{i}]")).map_err(|e| e.message))
        .collect()
}

/// A second of slack when comparing details' times with the DSS reference's (the DSS may
/// round what it stores).
const TIME_SLACK_US: i64 = 1_000_000;

/// The identity part of verification: details name the entity the DSS references (id, manager,
/// version) and carry an OVN.
fn same_entity(got: (&str, &str, i32, Option<&str>), dss: &Reference) -> Result<(), String> {
    let (id, manager, version, ovn) = got;
    if id != dss.id {
        return Err(format!("the details served are for `{id}`, not `{}`", dss.id));
    }
    if manager != dss.manager {
        return Err(format!("the details name `{manager}` as manager; the DSS records `{}`", dss.manager));
    }
    if version != dss.version {
        return Err(format!("the details are version {version}; the DSS holds version {}", dss.version));
    }
    if ovn.is_none_or(str::is_empty) {
        return Err("the details carry no OVN".into());
    }
    Ok(())
}

/// Checks that `got`, as served by a peer (or notified by one), is the entity the DSS
/// references as `dss`: same id, manager and version, with an OVN, readable and valid details
/// whose times lie within the reference's. Anything else is a reason it is unverifiable.
pub fn verify_intent(dss: &Reference, got: WireIntent) -> Result<KnownIntent, String> {
    let r = &got.reference;
    same_entity((&r.id, &r.manager, r.version, r.ovn.as_deref()), dss)?;
    let state = OperationalIntentState::parse(&r.state).ok_or_else(|| format!("unknown state `{}`", r.state))?;
    if got.details.volumes.is_empty() && got.details.off_nominal_volumes.is_empty() {
        return Err("the details have no volumes".into());
    }
    let volumes = volumes_from_wire(&got.details.volumes, "details.volumes")?;
    let off_nominal = volumes_from_wire(&got.details.off_nominal_volumes, "details.off_nominal_volumes")?;
    // The DSS's bounds are those of the extents written: the nominal volumes in nominal states;
    // off-nominal states may register only their off-nominal volumes.
    match state {
        OperationalIntentState::Accepted | OperationalIntentState::Activated => within_reference_times(&volumes, dss)?,
        _ if !off_nominal.is_empty() => within_reference_times(&off_nominal, dss)?,
        _ => within_reference_times(&volumes, dss)?,
    }
    let mut reference = Reference::from_intent_wire(r);
    reference.state = Some(state);
    Ok(KnownIntent { reference, state, priority: got.details.priority, volumes, off_nominal_volumes: off_nominal })
}

/// The constraint counterpart of [`verify_intent`].
pub fn verify_constraint(dss: &Reference, got: api::Constraint) -> Result<KnownConstraint, String> {
    let r = &got.reference;
    same_entity((&r.id, &r.manager, r.version, r.ovn.as_deref()), dss)?;
    if got.details.volumes.is_empty() {
        return Err("the details have no volumes".into());
    }
    let volumes = volumes_from_wire(&got.details.volumes, "details.volumes")?;
    within_reference_times(&volumes, dss)?;
    Ok(KnownConstraint { reference: Reference::from_constraint_wire(r), volumes })
}

fn within_reference_times(volumes: &[Volume4D], dss: &Reference) -> Result<(), String> {
    // An open bound is one the DSS wrote unreadably: nothing can be checked against it.
    let (Some(start), Some(end)) = (dss.time.start(), dss.time.end()) else {
        return Err("the DSS reference's time bounds cannot be read".into());
    };
    let bounds = model::time_bounds(volumes);
    let early = bounds.start().is_none_or(|s| s.micros() < start.micros() - TIME_SLACK_US);
    let late = bounds.end().is_none_or(|e| e.micros() > end.micros() + TIME_SLACK_US);
    if early || late {
        return Err("the details' volumes reach outside the time bounds of the DSS reference".into());
    }
    Ok(())
}

/// A change in flight, recorded durably before the DSS is asked to make it, and removed once
/// the outcome is recorded. Found at start-up, it is finished or undone against the DSS.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    pub change: Change,
    /// The version of our record before the change (`None` for a creation).
    pub previous_version: Option<i32>,
    pub recorded_at: Timestamp,
}

/// What a write-ahead record is about to ask of the DSS.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or update an operational intent into this state with these volumes.
    PutIntent {
        state: OperationalIntentState,
        priority: i32,
        volumes: Vec<Volume4D>,
        /// Where an off-nominal aircraft actually is (empty in the nominal states).
        off_nominal: Vec<Volume4D>,
    },
    DeleteIntent,
    PutConstraint {
        volumes: Vec<Volume4D>,
    },
    DeleteConstraint,
    /// Create an explicit subscription over this volume.
    PutSubscription {
        volume: Volume4D,
    },
}

impl Pending {
    /// The area the change touches, for the orphan search after a crash.
    pub fn area(&self) -> &[Volume4D] {
        match &self.change {
            Change::PutIntent { volumes, .. } | Change::PutConstraint { volumes } => volumes,
            Change::PutSubscription { .. } | Change::DeleteIntent | Change::DeleteConstraint => &[],
        }
    }

    pub fn to_record(&self) -> PendingRecord {
        let change = match &self.change {
            Change::PutIntent { state, priority, volumes, off_nominal } => PendingChangeRecord::PutIntent {
                state: state.as_str().to_owned(),
                details: api::OperationalIntentDetails {
                    volumes: api::extents_to_wire(volumes),
                    off_nominal_volumes: api::extents_to_wire(off_nominal),
                    priority: *priority,
                },
            },
            Change::DeleteIntent => PendingChangeRecord::DeleteIntent,
            Change::PutConstraint { volumes } => PendingChangeRecord::PutConstraint {
                details: api::ConstraintDetails {
                    volumes: api::extents_to_wire(volumes),
                    constraint_type: Some("Restricted".into()),
                },
            },
            Change::DeleteConstraint => PendingChangeRecord::DeleteConstraint,
            Change::PutSubscription { volume } => {
                PendingChangeRecord::PutSubscription { extents: Box::new(api::volume_to_wire(volume)) }
            }
        };
        PendingRecord {
            id: self.id.clone(),
            change,
            previous_version: self.previous_version,
            recorded_at: crate::time_text(self.recorded_at),
        }
    }

    pub fn from_record(r: PendingRecord) -> Result<Self, String> {
        let change = match r.change {
            PendingChangeRecord::PutIntent { state, details } => Change::PutIntent {
                state: OperationalIntentState::parse(&state).ok_or_else(|| format!("unknown state `{state}`"))?,
                priority: details.priority,
                volumes: volumes_from_wire(&details.volumes, "details.volumes")?,
                off_nominal: volumes_from_wire(&details.off_nominal_volumes, "details.off_nominal_volumes")?,
            },
            PendingChangeRecord::DeleteIntent => Change::DeleteIntent,
            PendingChangeRecord::PutConstraint { details } => {
                Change::PutConstraint { volumes: volumes_from_wire(&details.volumes, "details.volumes")? }
            }
            PendingChangeRecord::DeleteConstraint => Change::DeleteConstraint,
            PendingChangeRecord::PutSubscription { extents } => {
                Change::PutSubscription { volume: api::volume_from_wire(&extents, "extents").map_err(|e| e.message)? }
            }
        };
        let recorded_at = chrono::DateTime::parse_from_rfc3339(&r.recorded_at)
            .map(|t| Timestamp(t.timestamp_micros()))
            .unwrap_or(Timestamp(0));
        Ok(Pending { id: r.id, change, previous_version: r.previous_version, recorded_at })
    }
}

/// The stored form of a write-ahead record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRecord {
    pub id: String,
    pub change: PendingChangeRecord,
    pub previous_version: Option<i32>,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingChangeRecord {
    PutIntent { state: String, details: api::OperationalIntentDetails },
    DeleteIntent,
    PutConstraint { details: api::ConstraintDetails },
    DeleteConstraint,
    PutSubscription { extents: Box<api::Volume4D> },
}

/// A notification received from a peer, as kept in the bounded history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    pub received_at: String,
    /// The authenticated sender (the token's `sub`).
    pub from: String,
    /// `operational_intent` or `constraint`.
    pub kind: String,
    pub entity_id: String,
    /// `None` when the entity was deleted.
    pub version: Option<i32>,
    pub state: Option<String>,
    /// Whether the sender was confirmed as the entity's manager and the details cached.
    #[serde(default)]
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Received {
    /// A notification just heard from `from` about `kind` entity `entity_id` (at `version` and
    /// in `state`, or deleted), not yet accepted.
    pub fn heard(
        received_at: String,
        from: &str,
        kind: Kind,
        entity_id: &str,
        version: Option<i32>,
        state: Option<String>,
    ) -> Self {
        Received {
            received_at,
            from: from.to_owned(),
            kind: kind.as_str().into(),
            entity_id: entity_id.to_owned(),
            version,
            state,
            accepted: false,
            note: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(id: &str, manager: &str, version: i32, ovn: Option<&str>) -> api::OperationalIntentReference {
        api::OperationalIntentReference {
            id: id.into(),
            manager: manager.into(),
            uss_availability: "Normal".into(),
            version,
            state: "Accepted".into(),
            ovn: ovn.map(str::to_owned),
            time_start: api::Time { value: "2027-01-15T08:00:00Z".into(), format: "RFC3339".into() },
            time_end: api::Time { value: "2027-01-15T09:00:00Z".into(), format: "RFC3339".into() },
            uss_base_url: "https://uss.example/utm".into(),
            subscription_id: "0f3e0e9c-7f0b-4b0e-8f8e-9b1a3c5d7e9f".into(),
        }
    }

    fn details(start: &str, end: &str) -> api::OperationalIntentDetails {
        let v: api::Volume4D = serde_json::from_value(serde_json::json!({
            "volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 100, "units": "M"}},
                       "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
                       "altitude_upper": {"value": 100, "reference": "W84", "units": "M"}},
            "time_start": {"value": start, "format": "RFC3339"}, "time_end": {"value": end, "format": "RFC3339"}}))
        .expect("volume");
        api::OperationalIntentDetails { volumes: vec![v], off_nominal_volumes: vec![], priority: 3 }
    }

    #[test]
    fn details_are_accepted_only_when_they_match_the_dss_reference() {
        let dss = Reference::from_intent_wire(&reference("a", "alpha", 2, None));
        let good = || WireIntent {
            reference: reference("a", "alpha", 2, Some("ovn-of-alpha-0001")),
            details: details("2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z"),
        };
        let k = verify_intent(&dss, good()).expect("matching details");
        assert_eq!((k.priority, k.volumes.len()), (3, 1));
        type Spoil = Box<dyn Fn(&mut WireIntent)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("for `b`", Box::new(|w| w.reference.id = "b".into())),
            ("manager", Box::new(|w| w.reference.manager = "mallory".into())),
            ("version", Box::new(|w| w.reference.version = 3)),
            ("no OVN", Box::new(|w| w.reference.ovn = None)),
            ("no volumes", Box::new(|w| w.details.volumes.clear())),
            ("time bounds", Box::new(|w| w.details = details("2027-01-15T08:00:00Z", "2027-01-15T11:00:00Z"))),
            (
                "radius",
                Box::new(|w| w.details.volumes[0].volume.outline_circle.as_mut().expect("circle").radius = None),
            ),
        ];
        for (needle, spoil) in cases {
            let mut w = good();
            spoil(&mut w);
            match verify_intent(&dss, w) {
                Err(why) => assert!(why.contains(needle), "`{why}` should mention `{needle}`"),
                Ok(_) => panic!("spoiled details ({needle}) were accepted"),
            }
        }
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn notification_bodies_read_as_the_standard_s_parameters() {
        let subs = vec![api::SubscriptionState { subscription_id: "s".into(), notification_index: 4 }];
        let details = serde_json::json!({"reference": {"id": "a"}});
        let body = notification_body(Kind::Intent, "a", Some(details.clone()), subs.clone());
        assert_eq!(
            body,
            serde_json::json!({"operational_intent_id": "a", "operational_intent": details,
            "subscriptions": [{"subscription_id": "s", "notification_index": 4}]})
        );
        let removal: api::PutConstraintDetailsParameters =
            serde_json::from_value(notification_body(Kind::Constraint, "c", None, subs)).expect("constraint removal");
        assert_eq!((removal.constraint_id.as_str(), removal.constraint.is_none()), ("c", true));
    }

    #[test]
    fn write_ahead_records_keep_their_stored_form() {
        let v: api::Volume4D = serde_json::from_value(serde_json::json!({
            "volume": {"outline_circle": {"center": {"lat": 47.0, "lng": 8.0}, "radius": {"value": 100, "units": "M"}},
                       "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
                       "altitude_upper": {"value": 100, "reference": "W84", "units": "M"}},
            "time_start": {"value": "2027-01-15T08:00:00Z", "format": "RFC3339"},
            "time_end": {"value": "2027-01-15T09:00:00Z", "format": "RFC3339"}}))
        .expect("volume");
        let volume = api::volume_from_wire(&v, "v").expect("valid");
        let changes = [
            Change::PutIntent {
                state: OperationalIntentState::Nonconforming,
                priority: 2,
                volumes: vec![volume.clone()],
                off_nominal: vec![volume.clone()],
            },
            Change::DeleteIntent,
            Change::PutConstraint { volumes: vec![volume.clone()] },
            Change::DeleteConstraint,
            Change::PutSubscription { volume },
        ];
        for change in changes {
            let p = Pending {
                id: "a".into(),
                change: change.clone(),
                previous_version: Some(3),
                recorded_at: Timestamp(1_800_000_000_123_000),
            };
            let text = serde_json::to_string(&p.to_record()).expect("encode");
            let back = Pending::from_record(serde_json::from_str(&text).expect("decode")).expect("valid");
            assert_eq!((back.change, back.previous_version, back.recorded_at), (change, Some(3), p.recorded_at));
        }
        // The form written before the domain types (wire details, a state as text) still reads.
        let old = serde_json::json!({"id": "a", "previous_version": null, "recorded_at": "2027-01-15T07:00:00.000Z",
            "change": {"kind": "put_intent", "state": "Accepted", "details": {"volumes": [v], "off_nominal_volumes": [], "priority": 0}}});
        let p = Pending::from_record(serde_json::from_value(old).expect("decode")).expect("valid");
        assert!(matches!(p.change, Change::PutIntent { state: OperationalIntentState::Accepted, .. }));
    }
}
