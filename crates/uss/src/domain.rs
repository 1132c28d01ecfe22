//! The participant's view of a DSS reference, in domain terms: converted once, where the DSS's
//! answer (or a peer's) arrives, and turned back into wire text only where it is served, stored
//! or sent.
//!
//! One type serves operational intents and constraints alike ([`Kind`] tells them apart), so
//! the workflows that are the same for both (record, notify, verify, end) are written once.

use geo4d::{TimeWindow, Timestamp};
use model::{OperationalIntentState, UssAvailability};

/// What a reference is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Intent,
    Constraint,
}

impl Kind {
    /// The name in the participant's records and feeds (`operational_intent`, `constraint`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Intent => "operational_intent",
            Kind::Constraint => "constraint",
        }
    }
    /// The USS API's collection (details are served, notifications posted, under it).
    pub fn uss_path(self) -> &'static str {
        match self {
            Kind::Intent => "/uss/v1/operational_intents",
            Kind::Constraint => "/uss/v1/constraints",
        }
    }
}

/// A reference as the DSS holds it: who manages the entity, at which version, where its
/// details are served, when it is live, and (for intents) in which state.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub kind: Kind,
    pub id: String,
    pub manager: String,
    pub version: i32,
    /// The OVN: only the DSS's answer to its manager carries it.
    pub ovn: Option<String>,
    /// An intent's state; `None` for a constraint, or for an intent whose state the DSS wrote
    /// in a form this participant does not know (such an intent is never verifiable).
    pub state: Option<OperationalIntentState>,
    /// The reference's time bounds; a bound the DSS wrote unreadably is open (the entity then
    /// blocks more, never less).
    pub time: TimeWindow,
    pub base_url: String,
    pub availability: UssAvailability,
    /// The intent's subscription (empty for constraints).
    pub subscription_id: String,
}

impl Reference {
    pub fn from_intent_wire(r: &api::OperationalIntentReference) -> Self {
        Reference {
            kind: Kind::Intent,
            id: r.id.clone(),
            manager: r.manager.clone(),
            version: r.version,
            ovn: r.ovn.clone().filter(|o| !o.is_empty()),
            state: OperationalIntentState::parse(&r.state),
            time: window(&r.time_start, &r.time_end),
            base_url: r.uss_base_url.clone(),
            availability: UssAvailability::parse(&r.uss_availability).unwrap_or_default(),
            subscription_id: r.subscription_id.clone(),
        }
    }

    pub fn from_constraint_wire(r: &api::ConstraintReference) -> Self {
        Reference {
            kind: Kind::Constraint,
            id: r.id.clone(),
            manager: r.manager.clone(),
            version: r.version,
            ovn: r.ovn.clone().filter(|o| !o.is_empty()),
            state: None,
            time: window(&r.time_start, &r.time_end),
            base_url: r.uss_base_url.clone(),
            availability: UssAvailability::parse(&r.uss_availability).unwrap_or_default(),
            subscription_id: String::new(),
        }
    }

    pub fn to_intent_wire(&self) -> api::OperationalIntentReference {
        let (time_start, time_end) = self.wire_times();
        api::OperationalIntentReference {
            id: self.id.clone(),
            manager: self.manager.clone(),
            uss_availability: self.availability.as_str().to_owned(),
            version: self.version,
            state: self.state.map_or("Accepted", |s| s.as_str()).to_owned(),
            ovn: self.ovn.clone(),
            time_start,
            time_end,
            uss_base_url: self.base_url.clone(),
            subscription_id: self.subscription_id.clone(),
        }
    }

    pub fn to_constraint_wire(&self) -> api::ConstraintReference {
        let (time_start, time_end) = self.wire_times();
        api::ConstraintReference {
            id: self.id.clone(),
            manager: self.manager.clone(),
            uss_availability: self.availability.as_str().to_owned(),
            version: self.version,
            ovn: self.ovn.clone(),
            time_start,
            time_end,
            uss_base_url: self.base_url.clone(),
        }
    }

    fn wire_times(&self) -> (api::Time, api::Time) {
        let text = |t: Option<Timestamp>, open: Timestamp| api::time_to_wire(t.unwrap_or(open));
        (text(self.time.start(), Timestamp::MIN), text(self.time.end(), Timestamp::MAX))
    }

    /// The OVN, or empty when the DSS gave none (a reference of another manager).
    pub fn ovn_text(&self) -> &str {
        self.ovn.as_deref().unwrap_or_default()
    }

    /// Whether a plan must deconflict with this intent, and so prove it saw it: the DSS's own
    /// rule ([`model::intent_must_appear_in_keys`]: every intent but an Accepted one of a USS
    /// marked Down). An intent in an unknown state always counts; constraints always count.
    pub fn must_appear_in_keys(&self) -> bool {
        match (self.kind, self.state) {
            (Kind::Intent, Some(state)) => model::intent_must_appear_in_keys(state, self.availability),
            _ => true,
        }
    }
}

fn window(start: &api::Time, end: &api::Time) -> TimeWindow {
    let s = api::time_from_wire(start, "time_start").ok();
    let e = api::time_from_wire(end, "time_end").ok();
    TimeWindow::new(s, e).unwrap_or_else(|_| TimeWindow::unbounded())
}

/// A subscriber the DSS names for a change: where to post the notification, and the
/// subscriptions (with their notification indexes) it is sent for.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    pub base_url: String,
    pub subscriptions: Vec<(String, i32)>,
}

impl Subscriber {
    pub fn from_wire(s: &api::SubscriberToNotify) -> Self {
        Subscriber {
            base_url: s.uss_base_url.clone(),
            subscriptions: s.subscriptions.iter().map(|x| (x.subscription_id.clone(), x.notification_index)).collect(),
        }
    }
    pub fn subscriptions_wire(&self) -> Vec<api::SubscriptionState> {
        self.subscriptions
            .iter()
            .map(|(id, n)| api::SubscriptionState { subscription_id: id.clone(), notification_index: *n })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(state: &str, availability: &str) -> api::OperationalIntentReference {
        api::OperationalIntentReference {
            id: "a".into(),
            manager: "alpha".into(),
            uss_availability: availability.into(),
            version: 2,
            state: state.into(),
            ovn: Some("ovn-1".into()),
            time_start: api::Time { value: "2027-01-15T08:00:00Z".into(), format: "RFC3339".into() },
            time_end: api::Time { value: "2027-01-15T09:00:00Z".into(), format: "RFC3339".into() },
            uss_base_url: "https://uss.example/utm".into(),
            subscription_id: "s".into(),
        }
    }

    #[test]
    fn a_reference_round_trips_and_applies_the_dss_key_rule() {
        let r = Reference::from_intent_wire(&wire("Accepted", "Normal"));
        let back = r.to_intent_wire();
        assert_eq!(
            (back.time_start.value.as_str(), back.time_end.value.as_str(), back.state.as_str()),
            ("2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z", "Accepted")
        );
        assert_eq!(Reference::from_intent_wire(&back), r);
        // The DSS's rule, called, not re-typed: only a Down USS's Accepted intents are exempt.
        let cases = [
            ("Accepted", "Down", false),
            ("Accepted", "down", false),
            ("Activated", "Down", true),
            ("Accepted", "Normal", true),
            ("Accepted", "Unknown", true),
            ("Flying", "Down", true),
        ];
        for (state, availability, must) in cases {
            let r = Reference::from_intent_wire(&wire(state, availability));
            assert_eq!(r.must_appear_in_keys(), must, "{state} of a {availability} USS");
        }
    }

    #[test]
    fn unreadable_times_make_an_open_window() {
        let mut w = wire("Accepted", "Normal");
        w.time_end.value = "soon".into();
        let r = Reference::from_intent_wire(&w);
        assert!(r.time.start().is_some());
        assert_eq!(r.time.end(), None);
    }
}
