//! What the participant keeps, in domain terms, and the one conversion of each record to and
//! from the wire form it is stored and served in.
//!
//! Records arrive from three edges (the operator, the DSS, peers) and each is converted and
//! validated once there; from then on the participant works on these types.

use api::{OperationalIntent as WireIntent, OperationalIntentReference};
use geo4d::Volume4D;
use model::OperationalIntentState;
use serde::{Deserialize, Serialize};

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
    pub reference: OperationalIntentReference,
    pub state: OperationalIntentState,
    pub priority: i32,
    pub volumes: Vec<Volume4D>,
    pub off_nominal_volumes: Vec<Volume4D>,
    pub notified: Vec<Delivery>,
}

/// The stored and served form of an own intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnIntentRecord {
    pub intent: WireIntent,
    #[serde(default)]
    pub notified: Vec<Delivery>,
}

impl OwnIntent {
    pub fn id(&self) -> &str {
        &self.reference.id
    }
    pub fn ovn(&self) -> &str {
        self.reference.ovn.as_deref().unwrap_or_default()
    }
    /// The details as peers are served them.
    pub fn to_wire(&self) -> WireIntent {
        WireIntent {
            reference: self.reference.clone(),
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
        let state = OperationalIntentState::parse(&r.intent.reference.state)
            .ok_or_else(|| format!("unknown state `{}`", r.intent.reference.state))?;
        Ok(OwnIntent {
            state,
            priority: r.intent.details.priority,
            volumes: volumes_from_wire(&r.intent.details.volumes, "volumes")?,
            off_nominal_volumes: volumes_from_wire(&r.intent.details.off_nominal_volumes, "off_nominal_volumes")?,
            reference: r.intent.reference,
            notified: r.notified,
        })
    }
}

/// A constraint this participant manages.
#[derive(Debug, Clone)]
pub struct OwnConstraint {
    pub reference: api::ConstraintReference,
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
        api::Constraint {
            reference: self.reference.clone(),
            details: api::ConstraintDetails {
                volumes: api::extents_to_wire(&self.volumes),
                constraint_type: Some("Restricted".into()),
            },
        }
    }
    pub fn to_record(&self) -> OwnConstraintRecord {
        OwnConstraintRecord { constraint: self.to_wire(), notified: self.notified.clone() }
    }
    pub fn from_record(r: OwnConstraintRecord) -> Result<Self, String> {
        Ok(OwnConstraint {
            volumes: volumes_from_wire(&r.constraint.details.volumes, "volumes")?,
            reference: r.constraint.reference,
            notified: r.notified,
        })
    }
}

/// Another manager's operational intent, with details verified against the DSS's reference
/// (same id, manager and version, an OVN, times within the reference's bounds).
#[derive(Debug, Clone)]
pub struct KnownIntent {
    pub wire: WireIntent,
    pub state: OperationalIntentState,
    /// Nominal then off-nominal volumes.
    pub volumes: Vec<Volume4D>,
}

impl KnownIntent {
    pub fn reference(&self) -> &OperationalIntentReference {
        &self.wire.reference
    }
    pub fn to_planner(&self) -> planner::KnownIntent {
        planner::KnownIntent {
            id: self.wire.reference.id.clone(),
            manager: self.wire.reference.manager.clone(),
            state: self.state,
            priority: self.wire.details.priority,
            volumes: self.volumes.clone(),
        }
    }
}

/// Another manager's constraint, verified like [`KnownIntent`].
#[derive(Debug, Clone)]
pub struct KnownConstraint {
    pub wire: api::Constraint,
    pub volumes: Vec<Volume4D>,
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
fn same_entity(got: (&str, &str, i32, Option<&str>), dss: (&str, &str, i32)) -> Result<(), String> {
    let ((id, manager, version, ovn), (dss_id, dss_manager, dss_version)) = (got, dss);
    if id != dss_id {
        return Err(format!("the details served are for `{id}`, not `{dss_id}`"));
    }
    if manager != dss_manager {
        return Err(format!("the details name `{manager}` as manager; the DSS records `{dss_manager}`"));
    }
    if version != dss_version {
        return Err(format!("the details are version {version}; the DSS holds version {dss_version}"));
    }
    if ovn.is_none_or(str::is_empty) {
        return Err("the details carry no OVN".into());
    }
    Ok(())
}

/// Checks that `got`, as served by a peer (or notified by one), is the entity the DSS
/// references as `dss`: same id, manager and version, with an OVN, readable and valid details
/// whose times lie within the reference's. Anything else is a reason it is unverifiable.
pub fn verify_intent(dss: &OperationalIntentReference, got: WireIntent) -> Result<KnownIntent, String> {
    let r = &got.reference;
    same_entity((&r.id, &r.manager, r.version, r.ovn.as_deref()), (&dss.id, &dss.manager, dss.version))?;
    let state = OperationalIntentState::parse(&r.state).ok_or_else(|| format!("unknown state `{}`", r.state))?;
    if got.details.volumes.is_empty() && got.details.off_nominal_volumes.is_empty() {
        return Err("the details have no volumes".into());
    }
    let mut volumes = volumes_from_wire(&got.details.volumes, "details.volumes")?;
    let off_nominal = volumes_from_wire(&got.details.off_nominal_volumes, "details.off_nominal_volumes")?;
    // The DSS's bounds are those of the extents written: the nominal volumes in nominal states;
    // off-nominal states may register only their off-nominal volumes.
    match state {
        OperationalIntentState::Accepted | OperationalIntentState::Activated => {
            within_reference_times(&volumes, &dss.time_start, &dss.time_end)?
        }
        _ if !off_nominal.is_empty() => within_reference_times(&off_nominal, &dss.time_start, &dss.time_end)?,
        _ => within_reference_times(&volumes, &dss.time_start, &dss.time_end)?,
    }
    volumes.extend(off_nominal);
    Ok(KnownIntent { wire: got, state, volumes })
}

/// The constraint counterpart of [`verify_intent`].
pub fn verify_constraint(dss: &api::ConstraintReference, got: api::Constraint) -> Result<KnownConstraint, String> {
    let r = &got.reference;
    same_entity((&r.id, &r.manager, r.version, r.ovn.as_deref()), (&dss.id, &dss.manager, dss.version))?;
    if got.details.volumes.is_empty() {
        return Err("the details have no volumes".into());
    }
    let volumes = volumes_from_wire(&got.details.volumes, "details.volumes")?;
    within_reference_times(&volumes, &dss.time_start, &dss.time_end)?;
    Ok(KnownConstraint { wire: got, volumes })
}

fn within_reference_times(volumes: &[Volume4D], start: &api::Time, end: &api::Time) -> Result<(), String> {
    let start = api::time_from_wire(start, "time_start").map_err(|e| format!("the DSS reference's {}", e.message))?;
    let end = api::time_from_wire(end, "time_end").map_err(|e| format!("the DSS reference's {}", e.message))?;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub change: PendingChange,
    /// The version of our record before the change (`None` for a creation).
    pub previous_version: Option<i32>,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingChange {
    /// Create or update an operational intent into this state with these details.
    PutIntent {
        state: String,
        details: api::OperationalIntentDetails,
    },
    DeleteIntent,
    PutConstraint {
        details: api::ConstraintDetails,
    },
    DeleteConstraint,
}

impl Pending {
    /// The area the change touches, for the orphan search after a crash.
    pub fn area(&self) -> Vec<api::Volume4D> {
        match &self.change {
            PendingChange::PutIntent { details, .. } => details.volumes.clone(),
            PendingChange::PutConstraint { details } => details.volumes.clone(),
            PendingChange::DeleteIntent | PendingChange::DeleteConstraint => vec![],
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(id: &str, manager: &str, version: i32, ovn: Option<&str>) -> OperationalIntentReference {
        OperationalIntentReference {
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
        let dss = reference("a", "alpha", 2, None);
        let good = || WireIntent {
            reference: reference("a", "alpha", 2, Some("ovn-of-alpha-0001")),
            details: details("2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z"),
        };
        let k = verify_intent(&dss, good()).expect("matching details");
        assert_eq!((k.wire.details.priority, k.volumes.len()), (3, 1));
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
