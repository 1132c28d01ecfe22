//! Responses written straight from the DSS's views into JSON bytes, without building the owned
//! wire structs first and without serde. Area queries answer with many references; building
//! `wire::OperationalIntentReference` for each cost eight string allocations and an RFC 3339
//! formatting through `String`, and serde's writer escapes every key and value byte by byte:
//! together about a tenth of the server's time in the city benchmark. Here keys are constant
//! bytes, ids and times are formatted into stack buffers, and only strings that came from
//! outside (manager, base URL, OVN) are checked for characters JSON must escape. The JSON is
//! byte-for-byte the one `intent_to_wire`/`constraint_to_wire` + serde produce (proptested
//! below), so either path may be used anywhere.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use geo4d::{TimeWindow, Timestamp};
use model::{ConstraintView, IntentView};

use crate::convert::NULL_SUBSCRIPTION_ID;

/// A response body that writes itself as JSON.
pub trait JsonOut {
    fn write_json(&self, out: &mut Vec<u8>);
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out);
        out
    }
}

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

impl JsonOut for IntentsOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        // The strings of each reference live in their own allocations, cold on a busy server:
        // touch them all first so their cache misses overlap (see the store's search).
        let mut sink = 0usize;
        for v in self.0 {
            let oi = &v.intent;
            sink += usize::from(oi.ovn.as_str().as_bytes().first().copied().unwrap_or(0))
                + usize::from(oi.uss_base_url.as_bytes().first().copied().unwrap_or(0));
        }
        std::hint::black_box(sink);
        out.extend_from_slice(b"{\"operational_intent_references\":");
        seq(out, self.0, intent_ref);
        out.push(b'}');
    }
}

impl JsonOut for ConstraintsOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"constraint_references\":");
        seq(out, self.0, constraint_ref);
        out.push(b'}');
    }
}

impl JsonOut for ConflictOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"message\":");
        string(out, self.message);
        out.extend_from_slice(b",\"missing_operational_intents\":");
        seq(out, self.intents, intent_ref);
        out.extend_from_slice(b",\"missing_constraints\":");
        seq(out, self.constraints, constraint_ref);
        out.push(b'}');
    }
}

fn seq<T>(out: &mut Vec<u8>, items: &[T], item: fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, v);
    }
    out.push(b']');
}

/// A JSON string with serde_json's escaping: only `"`, `\\` and control characters are escaped
/// (non-ASCII is written as UTF-8). Strings needing none, the usual case, are copied as they are.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Not reachable: writing a &str to a Vec cannot fail.
        out.extend_from_slice(b"\"\"");
    }
}

/// A string known to need no escaping (ids, enum names, formatted times).
fn plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = uuid::Uuid::encode_buffer();
    plain(out, id.hyphenated().encode_lower(&mut buf));
}

fn int(out: &mut Vec<u8>, v: i32) {
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// A `Time` object: `{"value":"<RFC 3339>","format":"RFC3339"}`.
fn time(out: &mut Vec<u8>, t: Timestamp) {
    let mut buf = [0u8; 32];
    out.extend_from_slice(b"{\"value\":");
    match rfc3339(t, &mut buf) {
        Some(text) => plain(out, text),
        None => string(out, &chrono_rfc3339(t)),
    }
    out.extend_from_slice(b",\"format\":\"RFC3339\"}");
}

fn window(out: &mut Vec<u8>, w: TimeWindow) {
    out.extend_from_slice(b",\"time_start\":");
    time(out, w.start().unwrap_or(Timestamp(0)));
    out.extend_from_slice(b",\"time_end\":");
    time(out, w.end().unwrap_or(Timestamp(0)));
}

/// The fields both reference kinds open with: `{"id":…,"manager":…,"uss_availability":…,"version":…`.
fn ref_head(out: &mut Vec<u8>, id: &uuid::Uuid, manager: &str, availability: &str, version: i32) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, id);
    out.extend_from_slice(b",\"manager\":");
    string(out, manager);
    out.extend_from_slice(b",\"uss_availability\":");
    plain(out, availability);
    out.extend_from_slice(b",\"version\":");
    int(out, version);
}

/// The fields both continue with: the OVN when shown, the time window and the base URL.
fn ref_tail(out: &mut Vec<u8>, ovn: Option<&str>, time: TimeWindow, uss_base_url: &str) {
    if let Some(ovn) = ovn {
        out.extend_from_slice(b",\"ovn\":");
        string(out, ovn);
    }
    window(out, time);
    out.extend_from_slice(b",\"uss_base_url\":");
    string(out, uss_base_url);
}

/// One `OperationalIntentReference`, fields in the order of the wire struct.
fn intent_ref(out: &mut Vec<u8>, v: &IntentView) {
    let oi = &v.intent;
    ref_head(out, &oi.id, &oi.manager, v.availability.as_str(), oi.version);
    out.extend_from_slice(b",\"state\":");
    plain(out, oi.state.as_str());
    ref_tail(out, v.show_ovn.then(|| oi.ovn.as_str()), oi.time(), &oi.uss_base_url);
    out.extend_from_slice(b",\"subscription_id\":");
    match &oi.subscription_id {
        Some(id) => uuid(out, id),
        None => plain(out, NULL_SUBSCRIPTION_ID),
    }
    out.push(b'}');
}

/// One `ConstraintReference`, fields in the order of the wire struct.
fn constraint_ref(out: &mut Vec<u8>, v: &ConstraintView) {
    let c = &v.constraint;
    ref_head(out, &c.id, &c.manager, v.availability.as_str(), c.version);
    ref_tail(out, v.show_ovn.then(|| c.ovn.as_str()), c.time(), &c.uss_base_url);
    out.push(b'}');
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
        named_intent(start, end, sub, "uss \"one\"\\é")
    }

    fn named_intent(start: i64, end: i64, sub: bool, manager: &str) -> OperationalIntent {
        OperationalIntent {
            id: uuid::Uuid::new_v4(),
            manager: model::Manager::from(manager),
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
                                        sub: bool, show_ovn: bool, down: bool, manager in any::<String>()) {
            let v = IntentView {
                intent: Arc::new(named_intent(start, start + len, sub, &manager)),
                availability: if down { UssAvailability::Down } else { UssAvailability::Normal },
                show_ovn,
            };
            let fast = String::from_utf8(IntentsOut(std::slice::from_ref(&v)).to_json()).expect("utf8");
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
            let fast = String::from_utf8(ConflictOut { message: "missing \"OVNs\"", intents: &intents, constraints: &[] }.to_json()).expect("utf8");
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
            let fast = String::from_utf8(ConstraintsOut(std::slice::from_ref(&v)).to_json()).expect("utf8");
            let slow = serde_json::to_string(&crate::QueryConstraintReferencesResponse {
                constraint_references: vec![constraint_to_wire(&v)],
            }).expect("slow");
            prop_assert_eq!(fast, slow);
        }
    }
}
