//! Responses serialized straight from the DSS's views, without building the owned wire structs
//! first. Area queries answer with many references; building `wire::OperationalIntentReference`
//! for each cost eight string allocations and an RFC 3339 formatting through `String`, about a
//! tenth of the server's time in the city benchmark. The JSON is byte-for-byte the one
//! `intent_to_wire`/`constraint_to_wire` + serde produce (tested below), so either path may be
//! used anywhere.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use dss::{ConstraintView, IntentView};
use geo4d::{TimeWindow, Timestamp};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::convert::NULL_SUBSCRIPTION_ID;

/// `{"operational_intent_references": [...]}` of a query response.
pub struct IntentsOut<'a>(pub &'a [IntentView]);
/// `{"constraint_references": [...]}` of a query response.
pub struct ConstraintsOut<'a>(pub &'a [ConstraintView]);
/// `AirspaceConflictResponse`: a 409 listing the entities whose OVNs the key lacked.
pub struct ConflictOut<'a> {
    pub message: &'a str,
    pub intents: &'a [IntentView],
    pub constraints: &'a [ConstraintView],
}
/// One `OperationalIntentReference`.
pub struct IntentRefOut<'a>(pub &'a IntentView);
/// One `ConstraintReference`.
pub struct ConstraintRefOut<'a>(pub &'a ConstraintView);
/// A `Time` object: `{"value": "<RFC 3339>", "format": "RFC3339"}`.
struct TimeOut(Timestamp);

struct Seq<'a, T, R>(&'a [T], fn(&'a T) -> R);

impl<'a, T, R: Serialize> Serialize for Seq<'a, T, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

impl<'a> Serialize for IntentsOut<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("QueryOperationalIntentReferenceResponse", 1)?;
        st.serialize_field(
            "operational_intent_references",
            &Seq(self.0, IntentRefOut as fn(&'a IntentView) -> IntentRefOut<'a>),
        )?;
        st.end()
    }
}

impl<'a> Serialize for ConstraintsOut<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("QueryConstraintReferencesResponse", 1)?;
        st.serialize_field(
            "constraint_references",
            &Seq(self.0, ConstraintRefOut as fn(&'a ConstraintView) -> ConstraintRefOut<'a>),
        )?;
        st.end()
    }
}

impl<'a> Serialize for ConflictOut<'a> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("AirspaceConflictResponse", 3)?;
        st.serialize_field("message", self.message)?;
        st.serialize_field(
            "missing_operational_intents",
            &Seq(self.intents, IntentRefOut as fn(&'a IntentView) -> IntentRefOut<'a>),
        )?;
        st.serialize_field(
            "missing_constraints",
            &Seq(self.constraints, ConstraintRefOut as fn(&'a ConstraintView) -> ConstraintRefOut<'a>),
        )?;
        st.end()
    }
}

fn window(time: TimeWindow) -> (TimeOut, TimeOut) {
    (TimeOut(time.start().unwrap_or(Timestamp(0))), TimeOut(time.end().unwrap_or(Timestamp(0))))
}

impl Serialize for IntentRefOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let oi = &v.intent;
        let (start, end) = window(oi.time());
        let mut id_buf = uuid::Uuid::encode_buffer();
        let mut sub_buf = uuid::Uuid::encode_buffer();
        let mut st = s.serialize_struct("OperationalIntentReference", 10)?;
        st.serialize_field("id", oi.id.hyphenated().encode_lower(&mut id_buf) as &str)?;
        st.serialize_field("manager", &oi.manager)?;
        st.serialize_field("uss_availability", v.availability.as_str())?;
        st.serialize_field("version", &oi.version)?;
        st.serialize_field("state", oi.state.as_str())?;
        if v.show_ovn {
            st.serialize_field("ovn", oi.ovn.as_str())?;
        }
        st.serialize_field("time_start", &start)?;
        st.serialize_field("time_end", &end)?;
        st.serialize_field("uss_base_url", &oi.uss_base_url)?;
        let sub: &str = match oi.subscription_id {
            Some(id) => id.hyphenated().encode_lower(&mut sub_buf),
            None => NULL_SUBSCRIPTION_ID,
        };
        st.serialize_field("subscription_id", sub)?;
        st.end()
    }
}

impl Serialize for ConstraintRefOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let c = &v.constraint;
        let (start, end) = window(c.time());
        let mut id_buf = uuid::Uuid::encode_buffer();
        let mut st = s.serialize_struct("ConstraintReference", 8)?;
        st.serialize_field("id", c.id.hyphenated().encode_lower(&mut id_buf) as &str)?;
        st.serialize_field("manager", &c.manager)?;
        st.serialize_field("uss_availability", v.availability.as_str())?;
        st.serialize_field("version", &c.version)?;
        if v.show_ovn {
            st.serialize_field("ovn", c.ovn.as_str())?;
        }
        st.serialize_field("time_start", &start)?;
        st.serialize_field("time_end", &end)?;
        st.serialize_field("uss_base_url", &c.uss_base_url)?;
        st.end()
    }
}

impl Serialize for TimeOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        let mut st = s.serialize_struct("Time", 2)?;
        match rfc3339(self.0, &mut buf) {
            Some(text) => st.serialize_field("value", text)?,
            None => st.serialize_field("value", &chrono_rfc3339(self.0))?,
        }
        st.serialize_field("format", "RFC3339")?;
        st.end()
    }
}

/// The formatting of `time_to_wire` (chrono, `SecondsFormat::AutoSi`, `Z`), allocating.
pub(crate) fn chrono_rfc3339(t: Timestamp) -> String {
    DateTime::<Utc>::from_timestamp_micros(t.micros())
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// The same text as [`chrono_rfc3339`] written into `buf` without allocating; `None` for
/// years outside 0000-9999 (chrono then adds a sign), which the caller formats the slow way.
fn rfc3339(t: Timestamp, buf: &mut [u8; 32]) -> Option<&str> {
    let d = DateTime::<Utc>::from_timestamp_micros(t.micros())?;
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut w = Digits { buf, len: 0 };
    w.num(year as u32, 4);
    w.byte(b'-');
    w.num(d.month(), 2);
    w.byte(b'-');
    w.num(d.day(), 2);
    w.byte(b'T');
    w.num(d.hour(), 2);
    w.byte(b':');
    w.num(d.minute(), 2);
    w.byte(b':');
    w.num(d.second(), 2);
    // Microsecond timestamps: chrono's AutoSi writes 0, 3 or 6 fraction digits (9 for nanos).
    let nanos = d.nanosecond();
    if nanos != 0 {
        w.byte(b'.');
        if nanos % 1_000_000 == 0 {
            w.num(nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            w.num(nanos / 1_000, 6);
        } else {
            w.num(nanos, 9);
        }
    }
    w.byte(b'Z');
    let len = w.len;
    std::str::from_utf8(&buf[..len]).ok()
}

struct Digits<'a> {
    buf: &'a mut [u8; 32],
    len: usize,
}

impl Digits<'_> {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
    fn num(&mut self, value: u32, digits: u32) {
        for k in (0..digits).rev() {
            self.byte(b'0' + (value / 10u32.pow(k) % 10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{constraint_to_wire, intent_to_wire};
    use model::{Constraint, OperationalIntent, OperationalIntentState, Ovn, UssAvailability};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn extents(start: i64, end: i64) -> Vec<geo4d::Volume4D> {
        let c = geo4d::Circle::new(geo4d::LatLng::new(47.0, 8.0).expect("ll"), 100.0).expect("circle");
        vec![geo4d::Volume4D {
            footprint: geo4d::Footprint::Circle(c),
            altitude: geo4d::AltitudeBand::new(Some(0.0), Some(100.0)).expect("alt"),
            time: TimeWindow::new(Some(Timestamp(start)), Some(Timestamp(end))).expect("time"),
        }]
    }

    fn intent(start: i64, end: i64, sub: bool) -> OperationalIntent {
        OperationalIntent {
            id: uuid::Uuid::new_v4(),
            manager: model::Manager::from("uss \"one\"\\é"),
            uss_base_url: "https://uss.example/a?b=c".into(),
            version: 7,
            state: OperationalIntentState::Activated,
            ovn: Ovn::generate(),
            extents: extents(start, end),
            subscription_id: sub.then(uuid::Uuid::new_v4),
        }
    }

    proptest! {
        #[test]
        fn time_text_is_chrono_text(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999i64,
                                    round in 0usize..3) {
            let micros = match round { 0 => micros - micros.rem_euclid(1_000_000), 1 => micros - micros.rem_euclid(1000), _ => micros };
            let mut buf = [0u8; 32];
            prop_assert_eq!(rfc3339(Timestamp(micros), &mut buf).map(str::to_owned), Some(chrono_rfc3339(Timestamp(micros))));
        }

        #[test]
        fn intent_json_is_the_wire_json(start in 0i64..4_000_000_000_000_000, len in 1i64..10_000_000_000,
                                        sub: bool, show_ovn: bool, down: bool) {
            let v = IntentView {
                intent: Arc::new(intent(start, start + len, sub)),
                availability: if down { UssAvailability::Down } else { UssAvailability::Normal },
                show_ovn,
            };
            let fast = serde_json::to_string(&IntentsOut(std::slice::from_ref(&v))).expect("fast");
            let slow = serde_json::to_string(&crate::QueryOperationalIntentReferenceResponse {
                operational_intent_references: vec![intent_to_wire(&v)],
            }).expect("slow");
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn conflict_json_is_the_wire_json(start in 0i64..4_000_000_000_000_000, len in 1i64..10_000_000_000, n in 0usize..3) {
            let intents: Vec<IntentView> = (0..n).map(|i| IntentView {
                intent: Arc::new(intent(start, start + len, i % 2 == 0)),
                availability: UssAvailability::Normal,
                show_ovn: false,
            }).collect();
            let fast = serde_json::to_string(&ConflictOut { message: "missing \"OVNs\"", intents: &intents, constraints: &[] }).expect("fast");
            let slow = serde_json::to_string(&crate::AirspaceConflictResponse {
                message: "missing \"OVNs\"".into(),
                missing_operational_intents: intents.iter().map(intent_to_wire).collect(),
                missing_constraints: vec![],
            }).expect("slow");
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn constraint_json_is_the_wire_json(start in 0i64..4_000_000_000_000_000, len in 1i64..10_000_000_000, show_ovn: bool) {
            let c = Constraint {
                id: uuid::Uuid::new_v4(),
                manager: model::Manager::from("authority"),
                uss_base_url: "https://c.example".into(),
                version: 3,
                ovn: Ovn::generate(),
                extents: extents(start, start + len),
            };
            let v = ConstraintView { constraint: Arc::new(c), availability: UssAvailability::Unknown, show_ovn };
            let fast = serde_json::to_string(&ConstraintsOut(std::slice::from_ref(&v))).expect("fast");
            let slow = serde_json::to_string(&crate::QueryConstraintReferencesResponse {
                constraint_references: vec![constraint_to_wire(&v)],
            }).expect("slow");
            prop_assert_eq!(fast, slow);
        }
    }
}
