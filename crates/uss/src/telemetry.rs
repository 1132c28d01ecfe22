//! Live flights, in domain terms and without IO: a position as reported, its validation, the
//! 4D conformance test against an operation's volumes, the off-nominal volume that covers an
//! aircraft that left them, and the monitor's state per flight with the one decision function
//! that says what the operation's state should now be (`Flight::decide`). The workflows that
//! act on a decision (write the DSS, notify, record) are `monitor`'s; every rule here takes the
//! time as an argument, so the unit tests drive it with a fake clock.

use std::collections::VecDeque;

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, TimeWindow, Timestamp, Volume4D};
use model::OperationalIntentState;
use serde::{Deserialize, Serialize};

/// Most positions one request may carry.
pub const MAX_POSITIONS_PER_REQUEST: usize = 1000;
/// A position may be measured at most this far ahead of our clock (clocks disagree a little).
pub const MAX_FUTURE_S: i64 = 5;
/// The recent track kept in memory per flight: this long...
pub const TRACK_WINDOW_S: i64 = 600;
/// ...and at most this many positions (10 minutes at 1 Hz; a faster stream keeps less time).
pub const TRACK_CAP: usize = 600;
/// Largest accuracy bounds accepted (a fix worse than this is not a position).
pub const MAX_ACCURACY_H_M: f64 = 10_000.0;
pub const MAX_ACCURACY_V_M: f64 = 1_000.0;
/// Fastest ground speed accepted (m/s).
pub const MAX_SPEED_MPS: f64 = 400.0;
/// Speed assumed for an aircraft that reported none, when sizing where it may be.
pub const DEFAULT_SPEED_MPS: f64 = 15.0;
/// An off-nominal volume covers where the aircraft may get within this long at its speed...
pub const OFF_NOMINAL_REACH_S: f64 = 30.0;
/// ...plus this margin around it, horizontally and vertically.
pub const OFF_NOMINAL_MARGIN_M: f64 = 50.0;
pub const OFF_NOMINAL_MARGIN_V_M: f64 = 30.0;
/// An off-nominal volume lasts this long from when it is written, and is renewed when less
/// than `OFF_NOMINAL_RENEW_S` of it is left while the operation is still off-nominal.
pub const OFF_NOMINAL_HORIZON_S: i64 = 600;
pub const OFF_NOMINAL_RENEW_S: i64 = 120;
/// Largest off-nominal radius (a lost aircraft's grows with its silence up to this).
pub const MAX_OFF_NOMINAL_RADIUS_M: f64 = 20_000.0;

/// One position of one aircraft as the operator interface takes and serves it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PositionWire {
    /// RFC 3339.
    pub time: String,
    pub lat: f64,
    pub lng: f64,
    /// Metres above the WGS84 ellipsoid.
    pub alt_m: f64,
    pub accuracy_h_m: f64,
    pub accuracy_v_m: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_deg: Option<f64>,
}

/// A validated position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub time: Timestamp,
    pub at: LatLng,
    pub alt_m: f64,
    pub accuracy_h_m: f64,
    pub accuracy_v_m: f64,
    pub speed_mps: Option<f64>,
    pub track_deg: Option<f64>,
}

fn finite_in(name: &str, v: f64, lo: f64, hi: f64) -> Result<f64, String> {
    if !v.is_finite() {
        return Err(format!("{name}: {v} is not a number"));
    }
    if !(lo..=hi).contains(&v) {
        return Err(format!("{name}: {v} is outside {lo}..={hi}"));
    }
    Ok(v)
}

impl PositionWire {
    /// Validates a reported position; `now` bounds how far in the future it may be.
    pub fn to_domain(&self, now: Timestamp) -> Result<Position, String> {
        let t = chrono::DateTime::parse_from_rfc3339(&self.time)
            .map_err(|e| format!("time: `{}` is not an RFC 3339 time ({e})", self.time))?;
        let time = Timestamp::from_micros(t.timestamp_micros());
        if time.micros() > now.plus_seconds(MAX_FUTURE_S).micros() {
            return Err(format!(
                "time: {} is more than {MAX_FUTURE_S} s ahead of this participant's clock ({})",
                self.time,
                crate::time_text(now)
            ));
        }
        let lat = finite_in("lat", self.lat, -90.0, 90.0)?;
        let lng = finite_in("lng", self.lng, -180.0, 180.0)?;
        let at = LatLng::new(lat, lng).map_err(|e| e.to_string())?;
        let alt_m = finite_in("alt_m", self.alt_m, geo4d::limits::MIN_ALTITUDE_M, geo4d::limits::MAX_ALTITUDE_M)?;
        let accuracy_h_m = finite_in("accuracy_h_m", self.accuracy_h_m, 0.0, MAX_ACCURACY_H_M)?;
        let accuracy_v_m = finite_in("accuracy_v_m", self.accuracy_v_m, 0.0, MAX_ACCURACY_V_M)?;
        let speed_mps = self.speed_mps.map(|s| finite_in("speed_mps", s, 0.0, MAX_SPEED_MPS)).transpose()?;
        let track_deg = self.track_deg.map(|t| finite_in("track_deg", t, 0.0, 360.0)).transpose()?;
        Ok(Position { time, at, alt_m, accuracy_h_m, accuracy_v_m, speed_mps, track_deg })
    }
}

impl Position {
    pub fn to_wire(&self) -> PositionWire {
        PositionWire {
            time: crate::time_text(self.time),
            lat: self.at.lat(),
            lng: self.at.lng(),
            alt_m: self.alt_m,
            accuracy_h_m: self.accuracy_h_m,
            accuracy_v_m: self.accuracy_v_m,
            speed_mps: self.speed_mps,
            track_deg: self.track_deg,
        }
    }

    /// The standard's `VehicleTelemetry` (positions out to peers).
    pub fn to_vehicle_telemetry(&self) -> api::VehicleTelemetry {
        api::VehicleTelemetry {
            time_measured: api::time_to_wire(self.time),
            position: Some(api::TelemetryPosition {
                longitude: self.at.lng(),
                latitude: self.at.lat(),
                accuracy_h: Some(api::accuracy_h_category(self.accuracy_h_m).to_owned()),
                accuracy_v: Some(api::accuracy_v_category(self.accuracy_v_m).to_owned()),
                extrapolated: false,
                altitude: Some(api::Altitude { value: self.alt_m, reference: "W84".into(), units: "M".into() }),
            }),
            velocity: self.speed_mps.map(|speed| api::Velocity {
                speed,
                units_speed: "MetersPerSecond".into(),
                track: Some(self.track_deg.unwrap_or(360.0)),
            }),
        }
    }

    /// A position a peer served (`VehicleTelemetry`), for display only; `None` when it has no
    /// readable position.
    pub fn from_vehicle_telemetry(t: &api::VehicleTelemetry) -> Option<Position> {
        let p = t.position.as_ref()?;
        let time = api::time_from_wire(&t.time_measured, "time_measured").ok()?;
        let at = LatLng::new(p.latitude, p.longitude).ok()?;
        let alt_m = p.altitude.as_ref().map(|a| a.value).filter(|v| v.is_finite()).unwrap_or(0.0);
        let accuracy_h_m = p.accuracy_h.as_deref().and_then(api::accuracy_h_metres).unwrap_or(MAX_ACCURACY_H_M);
        Some(Position {
            time,
            at,
            alt_m,
            accuracy_h_m,
            accuracy_v_m: p.accuracy_v.as_deref().and_then(api::accuracy_v_metres).unwrap_or(MAX_ACCURACY_V_M),
            speed_mps: t.velocity.as_ref().map(|v| v.speed).filter(|s| s.is_finite() && *s >= 0.0),
            track_deg: t.velocity.as_ref().and_then(|v| v.track),
        })
    }

    /// The altitudes the aircraft may be at.
    fn band(&self) -> (f64, f64) {
        (self.alt_m - self.accuracy_v_m, self.alt_m + self.accuracy_v_m)
    }
}

/// Why a position is not within an operation's volumes: the nearest volume and by how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Excursion {
    /// Index of the nearest volume among the nominal ones.
    pub volume: usize,
    /// How far the position's centre is outside that volume's footprint (0: the centre is
    /// inside but its horizontal uncertainty reaches out).
    pub horizontal_m: f64,
    /// Metres the uncertainty band reaches above (positive) or below (negative) the volume.
    pub vertical_m: f64,
    /// Seconds before the volume's start (negative) or after its end (positive).
    pub time_s: f64,
}

impl Excursion {
    pub fn describe(&self, p: &Position) -> String {
        let mut parts = Vec::new();
        if self.horizontal_m > 0.0 {
            parts.push(format!("{:.0} m outside it horizontally", self.horizontal_m));
        } else if self.vertical_m == 0.0 && self.time_s == 0.0 {
            parts.push(format!("its horizontal uncertainty (±{:.0} m) reaches beyond it", p.accuracy_h_m));
        }
        if self.vertical_m > 0.0 {
            parts.push(format!("{:.0} m above it", self.vertical_m));
        } else if self.vertical_m < 0.0 {
            parts.push(format!("{:.0} m below it", -self.vertical_m));
        }
        if self.time_s > 0.0 {
            parts.push(format!("{:.0} s after it ends", self.time_s));
        } else if self.time_s < 0.0 {
            parts.push(format!("{:.0} s before it starts", -self.time_s));
        }
        format!(
            "position at {} ({:.6}, {:.6}, {:.0} m ±{:.0}/±{:.0} m) is outside the operation's volumes: \
             nearest is volume {}, {}",
            crate::time_text(p.time),
            p.at.lat(),
            p.at.lng(),
            p.alt_m,
            p.accuracy_h_m,
            p.accuracy_v_m,
            self.volume,
            parts.join(", ")
        )
    }
}

/// Points on the uncertainty circle's edge tested when it straddles several volumes.
const STRADDLE_POINTS: usize = 64;

/// Whether the whole uncertainty box of `p` (a circle of its horizontal accuracy, a band of its
/// vertical accuracy, at its time) lies within `volumes`.
///
/// Exact when one volume holds it (`Footprint::contains`). A box straddling volumes that meet
/// (a flight passing from one segment to the next) is inside when its centre and 64 points
/// evenly spaced on its edge each lie in a volume holding its altitudes at its time: between
/// two such points the circle's edge strays at most r(1 - cos(π/64)), 0.12% of the accuracy,
/// from the chord, the only place this test can err towards "inside".
pub fn check(volumes: &[Volume4D], p: &Position) -> Result<(), Excursion> {
    let (low, high) = p.band();
    let active: Vec<&Volume4D> = volumes
        .iter()
        .filter(|v| {
            v.time.start().is_none_or(|s| s.micros() <= p.time.micros())
                && v.time.end().is_none_or(|e| p.time.micros() <= e.micros())
                && v.altitude.lower_m().is_none_or(|l| l <= low)
                && v.altitude.upper_m().is_none_or(|u| high <= u)
        })
        .collect();
    if !active.is_empty() {
        let circle = Circle::new(p.at, p.accuracy_h_m.max(0.01)).map(Footprint::Circle);
        if let Ok(circle) = &circle {
            if active.iter().any(|v| v.footprint.contains(circle, 0.01)) {
                return Ok(());
            }
        }
        if active.len() > 1 {
            let edge = (0..STRADDLE_POINTS).map(|i| {
                let azimuth = 360.0 * i as f64 / STRADDLE_POINTS as f64;
                geo4d::destination(p.at, azimuth, p.accuracy_h_m)
            });
            let covered = |q: LatLng| active.iter().any(|v| v.footprint.distance_outside_m(q) <= 0.01);
            if covered(p.at) && edge.clone().all(covered) {
                return Ok(());
            }
        }
    }
    Err(nearest_excursion(volumes, p))
}

fn nearest_excursion(volumes: &[Volume4D], p: &Position) -> Excursion {
    let (low, high) = p.band();
    let t = p.time.as_seconds_f64();
    volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let above = v.altitude.upper_m().map_or(0.0, |u| (high - u).max(0.0));
            let below = v.altitude.lower_m().map_or(0.0, |l| (l - low).max(0.0));
            let vertical_m = if above >= below { above } else { -below };
            let before = v.time.start().map_or(0.0, |s| (s.as_seconds_f64() - t).max(0.0));
            let after = v.time.end().map_or(0.0, |e| (t - e.as_seconds_f64()).max(0.0));
            let time_s = if after > 0.0 { after } else { -before };
            Excursion { volume: i, horizontal_m: v.footprint.distance_outside_m(p.at), vertical_m, time_s }
        })
        .min_by(|a, b| {
            // Nearest in time first (a volume not yet or no longer live is far), then in space.
            let key = |e: &Excursion| (e.time_s.abs(), e.horizontal_m + e.vertical_m.abs());
            key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(Excursion { volume: 0, horizontal_m: 0.0, vertical_m: 0.0, time_s: 0.0 })
}

/// The off-nominal volume that covers where an aircraft last seen at `p` may be: a circle of its
/// accuracy plus what its speed covers in `reach_s` plus a margin, its altitudes widened by a
/// margin, from the earlier of `p`'s time and `now` to `OFF_NOMINAL_HORIZON_S` after `now`.
pub fn off_nominal_around(p: &Position, reach_s: f64, now: Timestamp) -> Volume4D {
    let speed = p.speed_mps.unwrap_or(DEFAULT_SPEED_MPS).max(DEFAULT_SPEED_MPS);
    let radius = (p.accuracy_h_m + speed * reach_s + OFF_NOMINAL_MARGIN_M).min(MAX_OFF_NOMINAL_RADIUS_M);
    let (low, high) = p.band();
    let clamp = |a: f64| a.clamp(geo4d::limits::MIN_ALTITUDE_M, geo4d::limits::MAX_ALTITUDE_M);
    let start = Timestamp::from_micros(p.time.micros().min(now.micros()));
    Volume4D {
        footprint: Footprint::Circle(
            Circle::new(p.at, radius)
                .or_else(|_| Circle::new(p.at, OFF_NOMINAL_MARGIN_M))
                .expect("a 50 m circle is always valid"),
        ),
        altitude: AltitudeBand::new(
            Some(clamp(low - OFF_NOMINAL_MARGIN_V_M)),
            Some(clamp(high + OFF_NOMINAL_MARGIN_V_M)),
        )
        .unwrap_or_else(|_| AltitudeBand::unbounded()),
        time: TimeWindow::new(Some(start), Some(now.plus_seconds(OFF_NOMINAL_HORIZON_S)))
            .unwrap_or_else(|_| TimeWindow::unbounded()),
    }
}

/// Why the monitor wants an operation off-nominal (or back).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A position outside the volumes.
    Outside(String),
    /// No position for this long.
    Lost { silent_s: i64 },
    /// Outside (or silent) for longer than allowed.
    StillOutside { for_s: i64 },
    /// Back inside and steady.
    BackInside { for_s: i64 },
    /// The aircraft left the off-nominal volumes, or they are running out: new ones.
    Renewed(String),
}

impl Reason {
    pub fn describe(&self) -> String {
        match self {
            Reason::Outside(why) => why.clone(),
            Reason::Lost { silent_s } => format!("lost position: no position for {silent_s} s"),
            Reason::StillOutside { for_s } => format!("still off-nominal after {for_s} s"),
            Reason::BackInside { for_s } => format!("back inside its volumes for {for_s} s"),
            Reason::Renewed(why) => why.clone(),
        }
    }
}

/// What the operation's state and off-nominal volumes should now be.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: OperationalIntentState,
    pub off_nominal: Vec<Volume4D>,
    pub reason: Reason,
}

/// The monitor's timers.
#[derive(Debug, Clone, Copy)]
pub struct MonitorConfig {
    pub contingent_after_s: i64,
    pub conforming_after_s: i64,
    pub telemetry_timeout_s: i64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { contingent_after_s: 30, conforming_after_s: 10, telemetry_timeout_s: 10 }
    }
}

/// What the monitor knows of one of our flights. Timers run on the participant's clock (when a
/// position arrived), never on the times the aircraft reported.
#[derive(Debug, Clone, Default)]
pub struct Flight {
    /// Recent positions, oldest first by their time.
    pub track: VecDeque<Position>,
    /// The newest position by its time.
    pub latest: Option<Position>,
    /// When the last position arrived.
    pub last_arrival: Option<Timestamp>,
    /// When the current stretch of positions outside began (none while the newest is inside).
    pub outside_since: Option<Timestamp>,
    /// When the current stretch of positions inside began, after an excursion.
    pub inside_since: Option<Timestamp>,
    /// The newest position found outside, and why.
    pub last_outside: Option<(Position, Excursion)>,
    /// Whether the monitor made the operation off-nominal (only then may it make it Activated
    /// again; an operator's declaration stands until the operator changes it).
    pub auto: bool,
    /// The last automatic change, for the operator.
    pub last_reason: Option<String>,
    /// Remote ID: the ISA this flight is announced in, as last written, and whether a write of
    /// it is under way.
    pub isa: Option<FlightIsa>,
    /// The ISA's id, chosen (and recorded with the flight) before it is first written, so a
    /// crash between the DSS's answer and our record leaves an ISA we still know.
    pub isa_id: Option<String>,
    pub isa_syncing: bool,
    /// The deliveries of the ISA's last change to its subscribers.
    pub isa_notified: Vec<crate::entities::Delivery>,
}

/// A flight's identification service area in the DSS, as last written.
#[derive(Debug, Clone, PartialEq)]
pub struct FlightIsa {
    pub id: String,
    pub version: String,
    pub volume: Volume4D,
}

impl Flight {
    /// Takes in a position that arrived at `now`, judged against the nominal `volumes`.
    /// Positions may arrive out of order: the track is kept ordered by time, and only a position
    /// newer than every one seen can end an excursion (an old one found outside still counts).
    pub fn observe(&mut self, p: Position, volumes: &[Volume4D], now: Timestamp) -> Result<(), Excursion> {
        let fit = check(volumes, &p);
        self.record(p, fit.clone(), now);
        fit
    }

    /// [`Self::observe`] with the position already judged (`fit`: `check`'s answer).
    pub fn record(&mut self, p: Position, fit: Result<(), Excursion>, now: Timestamp) {
        let at = self.track.partition_point(|q| q.time.micros() <= p.time.micros());
        self.track.insert(at, p);
        let oldest_kept = p.time.plus_seconds(-TRACK_WINDOW_S).micros();
        while self.track.len() > TRACK_CAP || self.track.front().is_some_and(|q| q.time.micros() < oldest_kept) {
            self.track.pop_front();
        }
        let newest = self.latest.is_none_or(|l| l.time.micros() <= p.time.micros());
        if newest {
            self.latest = Some(p);
        }
        self.last_arrival = Some(now);
        match &fit {
            Err(e) => {
                if self.last_outside.as_ref().is_none_or(|(q, _)| q.time.micros() <= p.time.micros()) {
                    self.last_outside = Some((p, e.clone()));
                }
                self.outside_since.get_or_insert(now);
                self.inside_since = None;
            }
            Ok(()) => {
                let after_excursion = self.last_outside.as_ref().is_none_or(|(q, _)| q.time.micros() < p.time.micros());
                if newest && after_excursion {
                    self.outside_since = None;
                    if self.auto {
                        self.inside_since.get_or_insert(now);
                    }
                }
            }
        }
    }

    /// Silence so far (`None` before the first position).
    pub fn silent_s(&self, now: Timestamp) -> Option<i64> {
        self.last_arrival.map(|t| (now.micros() - t.micros()) / 1_000_000)
    }

    /// What the operation (in `state`, with `off_nominal` volumes now) should become at `now`,
    /// or `None` when it is right as it is.
    pub fn decide(
        &self,
        state: OperationalIntentState,
        off_nominal: &[Volume4D],
        now: Timestamp,
        cfg: &MonitorConfig,
    ) -> Option<Decision> {
        use OperationalIntentState::*;
        let silent = self.silent_s(now)?;
        let lost = silent >= cfg.telemetry_timeout_s;
        let outside = self.outside_since.is_some();
        let seconds_since = |t: Timestamp| (now.micros() - t.micros()) / 1_000_000;
        // Where the aircraft may be now: around its newest position outside, or (silent) around
        // its last known one, grown by its speed over the silence.
        let cover = |reach: f64| -> Vec<Volume4D> {
            let p = if lost { self.latest } else { self.last_outside.as_ref().map(|(p, _)| *p).or(self.latest) };
            p.map(|p| vec![off_nominal_around(&p, reach, now)]).unwrap_or_default()
        };
        let reach = if lost { silent as f64 + OFF_NOMINAL_REACH_S } else { OFF_NOMINAL_REACH_S };
        match state {
            Activated if outside => {
                let why = self.last_outside.as_ref().map(|(p, e)| e.describe(p)).unwrap_or_default();
                Some(Decision { state: Nonconforming, off_nominal: cover(reach), reason: Reason::Outside(why) })
            }
            Activated if lost => Some(Decision {
                state: Nonconforming,
                off_nominal: cover(reach),
                reason: Reason::Lost { silent_s: silent },
            }),
            Nonconforming | Contingent if self.auto => {
                // Off-nominal for as long as it has been outside, or silent beyond the timeout.
                let silent_beyond = lost.then_some(silent - cfg.telemetry_timeout_s);
                let off_since = self.outside_since.map(seconds_since).max(silent_beyond);
                if state == Nonconforming {
                    if let Some(for_s) = off_since.filter(|s| *s >= cfg.contingent_after_s) {
                        return Some(Decision {
                            state: Contingent,
                            off_nominal: cover(reach),
                            reason: Reason::StillOutside { for_s },
                        });
                    }
                    if !lost && !outside {
                        if let Some(for_s) =
                            self.inside_since.map(seconds_since).filter(|s| *s >= cfg.conforming_after_s)
                        {
                            return Some(Decision {
                                state: Activated,
                                off_nominal: vec![],
                                reason: Reason::BackInside { for_s },
                            });
                        }
                    }
                }
                self.renewal(state, off_nominal, lost, outside, now, &cover(reach))
            }
            _ => None,
        }
    }

    /// New off-nominal volumes while off-nominal: when the aircraft is outside the ones written,
    /// or they are running out.
    fn renewal(
        &self,
        state: OperationalIntentState,
        off_nominal: &[Volume4D],
        lost: bool,
        outside: bool,
        now: Timestamp,
        cover: &[Volume4D],
    ) -> Option<Decision> {
        let running_out = off_nominal
            .iter()
            .filter_map(|v| v.time.end())
            .map(|e| e.micros())
            .max()
            .is_none_or(|end| end < now.plus_seconds(OFF_NOMINAL_RENEW_S).micros());
        if (lost || outside) && running_out {
            return Some(Decision {
                state,
                off_nominal: cover.to_vec(),
                reason: Reason::Renewed("off-nominal volumes renewed before they run out".into()),
            });
        }
        if lost {
            // A silent aircraft may have gone as far as its speed took it since it was last seen.
            let p = self.latest?;
            let silent_s = self.silent_s(now)? as f64;
            let grown = (p.accuracy_h_m + p.speed_mps.unwrap_or(DEFAULT_SPEED_MPS).max(DEFAULT_SPEED_MPS) * silent_s)
                .min(MAX_OFF_NOMINAL_RADIUS_M - OFF_NOMINAL_MARGIN_M);
            let needed = Position { accuracy_h_m: grown, time: now, ..p };
            if check(off_nominal, &needed).is_err() {
                return Some(Decision {
                    state,
                    off_nominal: cover.to_vec(),
                    reason: Reason::Renewed(format!(
                        "lost position for {silent_s:.0} s: off-nominal volumes grown by its speed"
                    )),
                });
            }
        }
        if outside {
            let (p, _) = self.last_outside.as_ref()?;
            if check(off_nominal, p).is_err() {
                return Some(Decision {
                    state,
                    off_nominal: cover.to_vec(),
                    reason: Reason::Renewed(format!(
                        "the aircraft left its off-nominal volumes (position at {}): new ones around it",
                        crate::time_text(p.time)
                    )),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo4d::Polygon;
    use OperationalIntentState::*;

    const T0: i64 = 1_800_000_000_000_000;

    fn at(s: f64) -> Timestamp {
        Timestamp::from_micros(T0 + (s * 1e6) as i64)
    }

    /// A square about 1.1 km (0.01° of latitude) a side west to east from `lng0`, 0-120 m,
    /// live from T0 to T0 + 1 h.
    fn square(lng0: f64) -> Volume4D {
        let v = |lat: f64, lng: f64| LatLng::new(lat, lng).expect("point");
        Volume4D {
            footprint: Footprint::Polygon(
                Polygon::new(vec![v(47.0, lng0), v(47.0, lng0 + 0.01), v(47.01, lng0 + 0.01), v(47.01, lng0)])
                    .expect("square"),
            ),
            altitude: AltitudeBand::new(Some(0.0), Some(120.0)).expect("band"),
            time: TimeWindow::new(Some(at(0.0)), Some(at(3600.0))).expect("window"),
        }
    }

    fn pos(s: f64, lat: f64, lng: f64, alt: f64, acc_h: f64) -> Position {
        Position {
            time: at(s),
            at: LatLng::new(lat, lng).expect("point"),
            alt_m: alt,
            accuracy_h_m: acc_h,
            accuracy_v_m: 3.0,
            speed_mps: Some(10.0),
            track_deg: Some(90.0),
        }
    }

    fn cfg() -> MonitorConfig {
        MonitorConfig::default()
    }

    /// Metres per degree of longitude at 47°N, about.
    const M_PER_DEG_LNG: f64 = 75_900.0;

    #[test]
    fn a_position_inside_passes_and_one_whose_uncertainty_reaches_out_does_not() {
        let v = [square(8.0)];
        assert_eq!(check(&v, &pos(10.0, 47.005, 8.005, 60.0, 5.0)), Ok(()));
        // The centre 20 m inside the west edge, but ±30 m: the box reaches 10 m beyond.
        let near_edge = pos(10.0, 47.005, 8.0 + 20.0 / M_PER_DEG_LNG, 60.0, 30.0);
        let e = check(&v, &near_edge).expect_err("the whole uncertainty box must lie inside");
        assert_eq!((e.volume, e.horizontal_m, e.vertical_m, e.time_s), (0, 0.0, 0.0, 0.0));
        assert!(
            e.describe(&near_edge).contains("horizontal uncertainty (±30 m) reaches beyond"),
            "{}",
            e.describe(&near_edge)
        );
        // The same centre with ±10 m is inside.
        assert_eq!(check(&v, &pos(10.0, 47.005, 8.0 + 20.0 / M_PER_DEG_LNG, 60.0, 10.0)), Ok(()));
    }

    #[test]
    fn a_position_outside_says_how_far_and_from_which_volume() {
        let v = [square(8.0), square(8.1)];
        // 200 m east of the second square's east edge, 20 m too high.
        let p = pos(10.0, 47.005, 8.11 + 200.0 / M_PER_DEG_LNG, 137.0, 5.0);
        let e = check(&v, &p).expect_err("outside");
        assert_eq!(e.volume, 1);
        assert!((e.horizontal_m - 200.0).abs() < 2.0, "{e:?}");
        assert!((e.vertical_m - 20.0).abs() < 1e-9, "{e:?}");
        let text = e.describe(&p);
        assert!(text.contains("volume 1") && text.contains("200 m outside") && text.contains("20 m above"), "{text}");
    }

    #[test]
    fn a_position_straddling_two_adjacent_volumes_is_inside() {
        let v = [square(8.0), square(8.01)];
        // On the shared edge with ±20 m: neither square holds it alone; both together do.
        let p = pos(10.0, 47.005, 8.01, 60.0, 20.0);
        assert!(v.iter().all(|one| check(std::slice::from_ref(one), &p).is_err()));
        assert_eq!(check(&v, &p), Ok(()));
        // Straddling a square's edge into nothing is outside.
        assert!(check(&v[..1], &pos(10.0, 47.005, 8.0, 60.0, 20.0)).is_err());
    }

    #[test]
    fn a_position_at_a_volumes_time_boundary_is_inside_and_just_after_it_is_outside() {
        let v = [square(8.0)];
        assert_eq!(check(&v, &pos(0.0, 47.005, 8.005, 60.0, 5.0)), Ok(()));
        assert_eq!(check(&v, &pos(3600.0, 47.005, 8.005, 60.0, 5.0)), Ok(()));
        let late = pos(3600.5, 47.005, 8.005, 60.0, 5.0);
        let e = check(&v, &late).expect_err("after the end");
        assert!((e.time_s - 0.5).abs() < 1e-6, "{e:?}");
        assert!(e.describe(&late).contains("s after it ends"));
    }

    #[test]
    fn outside_makes_an_activated_flight_nonconforming_with_off_nominal_volumes_around_it() {
        let v = [square(8.0)];
        let mut f = Flight::default();
        assert!(f.decide(Activated, &[], at(0.0), &cfg()).is_none(), "no position: nothing to judge");
        f.observe(pos(1.0, 47.005, 8.005, 60.0, 5.0), &v, at(1.0)).expect("inside");
        assert!(f.decide(Activated, &[], at(1.0), &cfg()).is_none());
        let out = pos(2.0, 47.005, 8.0 - 300.0 / M_PER_DEG_LNG, 60.0, 5.0);
        f.observe(out, &v, at(2.0)).expect_err("outside");
        let d = f.decide(Activated, &[], at(2.0), &cfg()).expect("a decision");
        assert_eq!(d.state, Nonconforming);
        assert!(
            matches!(&d.reason, Reason::Outside(why) if why.contains("m outside it horizontally")),
            "{:?}",
            d.reason
        );
        assert_eq!(d.off_nominal.len(), 1);
        assert_eq!(check(&d.off_nominal, &out), Ok(()), "the off-nominal volume covers where the aircraft is");
        // A Nonconforming the operator declared is left to the operator.
        assert!(f.decide(Nonconforming, &d.off_nominal, at(3.0), &cfg()).is_none());
    }

    #[test]
    fn still_outside_becomes_contingent_and_back_inside_and_steady_becomes_activated() {
        let v = [square(8.0)];
        let west = |s: f64, m: f64| pos(s, 47.005, 8.0 - m / M_PER_DEG_LNG, 60.0, 5.0);
        let mut f = Flight::default();
        f.observe(west(0.0, 300.0), &v, at(0.0)).expect_err("outside");
        let d = f.decide(Activated, &[], at(0.0), &cfg()).expect("nonconforming");
        f.auto = true;
        let off = d.off_nominal;
        // Still outside, within the off-nominal volume: nothing until the contingency timer.
        f.observe(west(10.0, 320.0), &v, at(10.0)).expect_err("outside");
        assert!(f.decide(Nonconforming, &off, at(10.0), &cfg()).is_none());
        assert!(f.decide(Nonconforming, &off, at(29.0), &cfg()).is_none());
        let c = f.decide(Nonconforming, &off, at(30.0), &cfg()).expect("contingent");
        assert_eq!((c.state, c.reason), (Contingent, Reason::StillOutside { for_s: 30 }));

        // Another excursion: back inside at 12 s, steady for the conforming time.
        let mut f = Flight::default();
        f.observe(west(0.0, 300.0), &v, at(0.0)).expect_err("outside");
        f.auto = true;
        for s in 12..=22 {
            f.observe(pos(s as f64, 47.005, 8.001, 60.0, 5.0), &v, at(s as f64)).expect("inside");
            if s == 21 {
                assert!(f.decide(Nonconforming, &off, at(21.0), &cfg()).is_none(), "not steady for 10 s yet");
            }
        }
        let back = f.decide(Nonconforming, &off, at(22.0), &cfg()).expect("activated");
        assert_eq!((back.state, back.off_nominal.len(), back.reason), (Activated, 0, Reason::BackInside { for_s: 10 }));
        // Outside again before that: the return is cancelled.
        f.observe(west(23.0, 300.0), &v, at(23.0)).expect_err("outside");
        assert!(f.decide(Nonconforming, &off, at(23.0), &cfg()).is_none());
        assert_eq!(f.inside_since, None);
    }

    #[test]
    fn leaving_the_off_nominal_volume_renews_it() {
        let v = [square(8.0)];
        let mut f = Flight::default();
        f.observe(pos(0.0, 47.005, 8.0 - 300.0 / M_PER_DEG_LNG, 60.0, 5.0), &v, at(0.0)).expect_err("outside");
        let off = f.decide(Activated, &[], at(0.0), &cfg()).expect("nonconforming").off_nominal;
        f.auto = true;
        let far = pos(5.0, 47.005, 8.0 - 3000.0 / M_PER_DEG_LNG, 60.0, 5.0);
        f.observe(far, &v, at(5.0)).expect_err("outside");
        let d = f.decide(Nonconforming, &off, at(5.0), &cfg()).expect("renewed");
        assert_eq!(d.state, Nonconforming);
        assert!(matches!(d.reason, Reason::Renewed(_)));
        assert_eq!(check(&d.off_nominal, &far), Ok(()));
    }

    #[test]
    fn silence_is_a_lost_position_with_off_nominal_volumes_grown_by_speed() {
        let v = [square(8.0)];
        let mut f = Flight::default();
        let last = pos(0.0, 47.005, 8.005, 60.0, 5.0);
        f.observe(last, &v, at(0.0)).expect("inside");
        assert!(f.decide(Activated, &[], at(9.0), &cfg()).is_none());
        let d = f.decide(Activated, &[], at(10.0), &cfg()).expect("lost");
        assert_eq!((d.state, d.reason.clone()), (Nonconforming, Reason::Lost { silent_s: 10 }));
        let Footprint::Circle(c) = &d.off_nominal[0].footprint else { panic!("a circle") };
        // 5 m + 15 m/s (the floor of the assumed speed) x (10 s + 30 s) + 50 m.
        assert!((c.radius_m() - 655.0).abs() < 1e-6, "{}", c.radius_m());
        f.auto = true;
        // Silent for longer than the contingency time after the timeout: Contingent.
        let c = f.decide(Nonconforming, &d.off_nominal, at(40.0), &cfg()).expect("contingent");
        assert_eq!(c.state, Contingent);
        // Silent in Contingent for long: the volume grows with the silence.
        let g = f.decide(Contingent, &d.off_nominal, at(60.0), &cfg()).expect("grown");
        let Footprint::Circle(g) = &g.off_nominal[0].footprint else { panic!("a circle") };
        assert!(g.radius_m() > 1000.0, "{}", g.radius_m());
    }

    #[test]
    fn out_of_order_positions_are_kept_in_time_order_and_an_old_one_does_not_end_an_excursion() {
        let v = [square(8.0)];
        let inside = |s: f64| pos(s, 47.005, 8.005, 60.0, 5.0);
        let outside = |s: f64| pos(s, 47.005, 8.0 - 300.0 / M_PER_DEG_LNG, 60.0, 5.0);
        let mut f = Flight::default();
        f.observe(inside(5.0), &v, at(5.0)).expect("inside");
        f.observe(inside(3.0), &v, at(5.1)).expect("inside");
        f.observe(inside(4.0), &v, at(5.2)).expect("inside");
        let times: Vec<i64> = f.track.iter().map(|p| (p.time.micros() - T0) / 1_000_000).collect();
        assert_eq!(times, vec![3, 4, 5]);
        assert_eq!(f.latest.map(|p| p.time), Some(at(5.0)), "the newest by time, not by arrival");
        // A late report that the aircraft was outside at 4.5 s still counts.
        f.observe(outside(4.5), &v, at(6.0)).expect_err("outside");
        assert!(f.decide(Activated, &[], at(6.0), &cfg()).is_some_and(|d| d.state == Nonconforming));
        f.auto = true;
        // An older inside position does not end the excursion; a newer one starts the return.
        f.observe(inside(4.0), &v, at(6.1)).expect("inside");
        assert_eq!(f.inside_since, None);
        f.observe(inside(7.0), &v, at(7.0)).expect("inside");
        assert_eq!((f.outside_since, f.inside_since), (None, Some(at(7.0))));
    }

    #[test]
    fn the_track_is_bounded_in_time_and_count() {
        let v = [square(8.0)];
        let mut f = Flight::default();
        for i in 0..(TRACK_CAP + 50) {
            f.observe(pos(i as f64 * 0.1, 47.005, 8.005, 60.0, 5.0), &v, at(i as f64 * 0.1)).expect("inside");
        }
        assert_eq!(f.track.len(), TRACK_CAP);
        f.observe(pos(2000.0, 47.005, 8.005, 60.0, 5.0), &v, at(2000.0)).expect("inside");
        assert_eq!(f.track.len(), 1, "positions older than {TRACK_WINDOW_S} s before the newest are dropped");
    }

    #[test]
    fn reported_positions_are_validated() {
        let now = at(100.0);
        let good = PositionWire {
            time: crate::time_text(at(99.0)),
            lat: 47.0,
            lng: 8.0,
            alt_m: 100.0,
            accuracy_h_m: 5.0,
            accuracy_v_m: 3.0,
            speed_mps: Some(12.0),
            track_deg: Some(270.0),
        };
        let p = good.to_domain(now).expect("valid");
        assert_eq!(p.to_wire(), good);
        let bad = |f: &dyn Fn(&mut PositionWire), needle: &str| {
            let mut w = good.clone();
            f(&mut w);
            let e = w.to_domain(now).expect_err(needle);
            assert!(e.contains(needle), "`{e}` should mention `{needle}`");
        };
        bad(&|w| w.lat = f64::NAN, "lat");
        bad(&|w| w.lng = 180.5, "lng");
        bad(&|w| w.alt_m = 1e9, "alt_m");
        bad(&|w| w.accuracy_h_m = -1.0, "accuracy_h_m");
        bad(&|w| w.accuracy_v_m = f64::INFINITY, "accuracy_v_m");
        bad(&|w| w.speed_mps = Some(1000.0), "speed_mps");
        bad(&|w| w.track_deg = Some(-5.0), "track_deg");
        bad(&|w| w.time = "yesterday".into(), "RFC 3339");
        bad(&|w| w.time = crate::time_text(at(106.0)), "ahead of this participant's clock");
        assert!(PositionWire { time: crate::time_text(at(104.0)), ..good.clone() }.to_domain(now).is_ok());
    }

    #[test]
    fn telemetry_out_uses_the_standards_categories() {
        let p = pos(0.0, 47.0, 8.0, 100.0, 5.0);
        let t = p.to_vehicle_telemetry();
        let position = t.position.as_ref().expect("position");
        assert_eq!((position.accuracy_h.as_deref(), position.accuracy_v.as_deref()), (Some("HA10m"), Some("VA3m")));
        let back = Position::from_vehicle_telemetry(&t).expect("readable");
        assert_eq!((back.at, back.time, back.accuracy_h_m, back.accuracy_v_m), (p.at, p.time, 10.0, 3.0));
    }
}
