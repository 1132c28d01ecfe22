//! The participant's planning decisions as pure functions of domain values: given our volumes
//! and priority and what we know of the airspace (others' operations with their details,
//! constraints, and entries we could not verify), which conflicts a plan has and why, and which
//! changes to it (a later start, another altitude band) would clear every one of them.
//!
//! It exists so that the rules that keep parties apart are written once, tested against a
//! brute-force check, and never mixed with IO: no HTTP, no storage, no clock, no wire types.
//! The participant gathers the inputs, calls [`assess`] and [`proposals`], and re-checks any
//! proposal against a fresh picture of the airspace before offering it.
//!
//! The rules:
//! - a plan may overlap only operations of strictly lower priority (ASTM F3548-21's priority
//!   rule; equal priorities conflict, the conservative choice where the regulator allows
//!   neither);
//! - a plan may not enter a constraint's volumes;
//! - an entry we could not verify (details missing, unreadable, invalid, or not matching the
//!   DSS's reference) blocks every volume of ours that overlaps its DSS reference's time window,
//!   anywhere in space: missing knowledge is never treated as free airspace.

use geo4d::{AltitudeBand, TimeWindow, Timestamp, Volume4D};
use model::OperationalIntentState;

/// Another operation whose details we hold and verified against the DSS's reference.
#[derive(Debug, Clone)]
pub struct KnownIntent {
    pub id: String,
    pub manager: String,
    pub state: OperationalIntentState,
    pub priority: i32,
    /// Nominal volumes followed by off-nominal ones; conflicts name volumes by this index.
    pub volumes: Vec<Volume4D>,
}

/// A constraint whose details we hold and verified against the DSS's reference.
#[derive(Debug, Clone)]
pub struct KnownConstraint {
    pub id: String,
    pub manager: String,
    pub volumes: Vec<Volume4D>,
}

/// What an unverifiable entry is, as far as the DSS tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    OperationalIntent,
    Constraint,
}

/// An entity the DSS reports in our area whose details we could not verify.
#[derive(Debug, Clone)]
pub struct Unverifiable {
    pub kind: EntryKind,
    pub id: String,
    pub manager: String,
    pub state: Option<OperationalIntentState>,
    /// The time window of its DSS reference: it blocks all of it, everywhere.
    pub time: TimeWindow,
    pub reason: String,
}

/// Everything known about the airspace around a plan.
#[derive(Debug, Clone, Default)]
pub struct Airspace {
    pub intents: Vec<KnownIntent>,
    pub constraints: Vec<KnownConstraint>,
    pub unverifiable: Vec<Unverifiable>,
}

/// What a volume of ours ran into.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocker {
    /// An operation of equal or higher priority.
    Intent { id: String, manager: String, priority: i32, state: OperationalIntentState, their_volume: usize },
    /// A constraint's volume.
    Constraint { id: String, manager: String, their_volume: usize },
    /// An entry we could not verify; `reason` says why.
    Unverifiable { kind: EntryKind, id: String, manager: String, state: Option<OperationalIntentState>, reason: String },
}

impl Blocker {
    pub fn id(&self) -> &str {
        match self {
            Blocker::Intent { id, .. } | Blocker::Constraint { id, .. } | Blocker::Unverifiable { id, .. } => id,
        }
    }
    pub fn manager(&self) -> &str {
        match self {
            Blocker::Intent { manager, .. }
            | Blocker::Constraint { manager, .. }
            | Blocker::Unverifiable { manager, .. } => manager,
        }
    }
}

/// One overlap of a volume of ours with something that blocks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub my_volume: usize,
    pub blocker: Blocker,
    /// When both overlap (open ends stay open).
    pub overlap_time: TimeWindow,
    /// The altitude band both occupy; `None` for an unverifiable entry (its band is unknown).
    pub overlap_altitude: Option<AltitudeBand>,
}

/// A change to a whole plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Every volume starts and ends this many seconds later.
    ShiftStart { seconds: i64 },
    /// Every volume moves this many metres up (negative: down).
    AltitudeOffset { metres: f64 },
}

/// A change and the plan it gives, which [`assess`] finds free of conflicts on the same inputs.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub change: Change,
    pub volumes: Vec<Volume4D>,
}

fn overlap_time(a: &TimeWindow, b: &TimeWindow) -> TimeWindow {
    let start = match (a.start(), b.start()) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let end = match (a.end(), b.end()) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    // The windows overlap (checked by the caller), so start <= end and this cannot fail.
    TimeWindow::new(start, end).unwrap_or(*a)
}

fn overlap_band(a: &AltitudeBand, b: &AltitudeBand) -> AltitudeBand {
    let lower = match (a.lower_m(), b.lower_m()) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let upper = match (a.upper_m(), b.upper_m()) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    AltitudeBand::new(lower, upper).unwrap_or(*a)
}

/// Whether an operation of `their_priority` blocks a plan of `my_priority`.
pub fn blocks(their_priority: i32, my_priority: i32) -> bool {
    their_priority >= my_priority
}

/// Every conflict of `mine` (at `priority`) with `airspace`. `self_id` is the id of the
/// operation being modified, which never conflicts with itself.
pub fn assess(mine: &[Volume4D], priority: i32, airspace: &Airspace, self_id: Option<&str>) -> Vec<Conflict> {
    let mut out = Vec::new();
    for other in &airspace.intents {
        if Some(other.id.as_str()) == self_id || !blocks(other.priority, priority) {
            continue;
        }
        for (my_volume, mv) in mine.iter().enumerate() {
            for (their_volume, ov) in other.volumes.iter().enumerate() {
                if mv.intersects(ov) {
                    out.push(Conflict {
                        my_volume,
                        blocker: Blocker::Intent {
                            id: other.id.clone(),
                            manager: other.manager.clone(),
                            priority: other.priority,
                            state: other.state,
                            their_volume,
                        },
                        overlap_time: overlap_time(&mv.time, &ov.time),
                        overlap_altitude: Some(overlap_band(&mv.altitude, &ov.altitude)),
                    });
                }
            }
        }
    }
    for c in &airspace.constraints {
        for (my_volume, mv) in mine.iter().enumerate() {
            for (their_volume, cv) in c.volumes.iter().enumerate() {
                if mv.intersects(cv) {
                    out.push(Conflict {
                        my_volume,
                        blocker: Blocker::Constraint { id: c.id.clone(), manager: c.manager.clone(), their_volume },
                        overlap_time: overlap_time(&mv.time, &cv.time),
                        overlap_altitude: Some(overlap_band(&mv.altitude, &cv.altitude)),
                    });
                }
            }
        }
    }
    for u in &airspace.unverifiable {
        if Some(u.id.as_str()) == self_id {
            continue;
        }
        for (my_volume, mv) in mine.iter().enumerate() {
            if mv.time.overlaps(&u.time) {
                out.push(Conflict {
                    my_volume,
                    blocker: Blocker::Unverifiable {
                        kind: u.kind,
                        id: u.id.clone(),
                        manager: u.manager.clone(),
                        state: u.state,
                        reason: u.reason.clone(),
                    },
                    overlap_time: overlap_time(&mv.time, &u.time),
                    overlap_altitude: None,
                });
            }
        }
    }
    out
}

/// Applies `change` to every volume; `None` when the result would not be valid (times or
/// altitudes out of range).
pub fn apply(change: Change, mine: &[Volume4D]) -> Option<Vec<Volume4D>> {
    mine.iter()
        .map(|v| match change {
            Change::ShiftStart { seconds } => {
                let shift = |t: Option<Timestamp>| -> Option<Option<Timestamp>> {
                    match t {
                        None => Some(None),
                        Some(t) => t.micros().checked_add(seconds.checked_mul(1_000_000)?).map(|m| Some(Timestamp(m))),
                    }
                };
                let time = TimeWindow::new(shift(v.time.start())?, shift(v.time.end())?).ok()?;
                Some(Volume4D { footprint: v.footprint.clone(), altitude: v.altitude, time })
            }
            Change::AltitudeOffset { metres } => {
                let altitude = AltitudeBand::new(
                    v.altitude.lower_m().map(|a| a + metres),
                    v.altitude.upper_m().map(|a| a + metres),
                )
                .ok()?;
                Some(Volume4D { footprint: v.footprint.clone(), altitude, time: v.time })
            }
        })
        .collect()
}

/// Most candidates of each kind tried.
const MAX_CANDIDATES: usize = 64;
/// Clearance added beyond a blocker's end or band, so touching (closed) intervals are cleared.
const TIME_CLEARANCE_S: i64 = 1;
const ALTITUDE_CLEARANCE_M: f64 = 1.0;

/// Changes that clear every conflict of `mine`, best first: the earliest start shifts within
/// `horizon_s`, then the smallest altitude offsets. Each returned plan has no conflict under
/// [`assess`] with the same inputs. Unverifiable entries are cleared only by time (their
/// altitude is unknown), so while one overlaps no altitude change is offered.
pub fn proposals(
    mine: &[Volume4D],
    priority: i32,
    airspace: &Airspace,
    self_id: Option<&str>,
    horizon_s: i64,
) -> Vec<Proposal> {
    let found = assess(mine, priority, airspace, self_id);
    if found.is_empty() {
        return vec![];
    }
    let mut blocking: Vec<(TimeWindow, Option<AltitudeBand>)> = Vec::new();
    for o in airspace.intents.iter().filter(|o| Some(o.id.as_str()) != self_id && blocks(o.priority, priority)) {
        blocking.extend(o.volumes.iter().map(|v| (v.time, Some(v.altitude))));
    }
    for c in &airspace.constraints {
        blocking.extend(c.volumes.iter().map(|v| (v.time, Some(v.altitude))));
    }
    for u in airspace.unverifiable.iter().filter(|u| Some(u.id.as_str()) != self_id) {
        blocking.push((u.time, None));
    }
    let mut out = Vec::new();
    // A conflict clears by time only once our volume starts after the other ends: those are
    // the candidate delays, in order.
    let mut delays: Vec<i64> = Vec::new();
    for mv in mine {
        let Some(my_start) = mv.time.start() else { continue };
        for (time, _) in &blocking {
            if let Some(end) = time.end() {
                let d = (end.micros() - my_start.micros()).div_euclid(1_000_000) + TIME_CLEARANCE_S;
                if d > 0 && d <= horizon_s {
                    delays.push(d);
                }
            }
        }
    }
    delays.sort_unstable();
    delays.dedup();
    for seconds in delays.into_iter().take(MAX_CANDIDATES) {
        let change = Change::ShiftStart { seconds };
        if let Some(volumes) = apply(change, mine) {
            if assess(&volumes, priority, airspace, self_id).is_empty() {
                out.push(Proposal { change, volumes });
                break;
            }
        }
    }
    if found.iter().any(|c| matches!(c.blocker, Blocker::Unverifiable { .. })) {
        return out;
    }
    // Altitude: just above or just below each blocking band, nearest first.
    let mut offsets: Vec<f64> = Vec::new();
    for mv in mine {
        let (Some(lo), Some(hi)) = (mv.altitude.lower_m(), mv.altitude.upper_m()) else { continue };
        for band in blocking.iter().filter_map(|(_, b)| *b) {
            if let Some(top) = band.upper_m() {
                offsets.push(top + ALTITUDE_CLEARANCE_M - lo);
            }
            if let Some(bottom) = band.lower_m() {
                offsets.push(bottom - ALTITUDE_CLEARANCE_M - hi);
            }
        }
    }
    offsets.retain(|o| o.is_finite() && *o != 0.0);
    offsets.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    offsets.dedup();
    for metres in offsets.into_iter().take(MAX_CANDIDATES) {
        let change = Change::AltitudeOffset { metres };
        if let Some(volumes) = apply(change, mine) {
            // Moving a plan that starts at or above the ellipsoid below it is no proposal.
            let underground = volumes.iter().zip(mine).any(|(v, m)| {
                v.altitude.lower_m().is_some_and(|l| l < 0.0) && m.altitude.lower_m().is_none_or(|l| l >= 0.0)
            });
            if !underground && assess(&volumes, priority, airspace, self_id).is_empty() {
                out.push(Proposal { change, volumes });
                break;
            }
        }
    }
    out
}

/// ASTM F3548-21's maximum planning horizon (OiMaxPlanHorizon): no volume of a plan may start
/// more than 30 days from now.
pub const MAX_PLAN_HORIZON_S: i64 = 30 * 86_400;
/// Longest a plan may last, first start to last end. The standard sets no figure; a day keeps a
/// plan within what the DSS keeps subscriptions for (24 hours), so the participant keeps hearing
/// of changes around it for as long as it flies.
pub const MAX_PLAN_DURATION_S: i64 = 24 * 3600;

/// Why a plan's times make it unplannable, whatever the airspace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidPlan {
    /// No volumes at all.
    NoVolumes,
    /// A volume without a start or an end.
    Unbounded { volume: usize },
    /// A volume starting beyond [`MAX_PLAN_HORIZON_S`]; `starts_in_s` from now.
    BeyondHorizon { volume: usize, starts_in_s: i64 },
    /// Every volume ended already.
    Ended,
    /// This volume ended already while others have not.
    VolumeEnded { volume: usize },
    /// First start to last end is longer than [`MAX_PLAN_DURATION_S`].
    TooLong { lasts_s: i64 },
}

impl std::fmt::Display for InvalidPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            InvalidPlan::NoVolumes => write!(f, "a plan needs at least one volume"),
            InvalidPlan::Unbounded { volume } => {
                write!(f, "volume {volume} has no start or no end time; every volume of a plan needs both")
            }
            InvalidPlan::BeyondHorizon { volume, starts_in_s } => write!(
                f,
                "volume {volume} starts {:.1} days from now, beyond the standard's maximum planning horizon of {} days",
                starts_in_s as f64 / 86_400.0,
                MAX_PLAN_HORIZON_S / 86_400
            ),
            InvalidPlan::Ended => write!(f, "the plan has already ended: every volume ends in the past"),
            InvalidPlan::VolumeEnded { volume } => {
                write!(f, "volume {volume} has already ended while others have not; remove it from the plan")
            }
            InvalidPlan::TooLong { lasts_s } => write!(
                f,
                "the plan lasts {:.1} hours from its first start to its last end; at most {} hours",
                lasts_s as f64 / 3600.0,
                MAX_PLAN_DURATION_S / 3600
            ),
        }
    }
}

/// Checks what makes a plan invalid by its times alone, before anything is asked of the DSS:
/// no volumes, a volume without both times, a start beyond the planning horizon, a plan already
/// over, a volume over while others are not, a plan longer than [`MAX_PLAN_DURATION_S`]. A volume
/// that started in the past and ends in the future is current, and fine.
pub fn check_plan_times(volumes: &[Volume4D], now: Timestamp) -> Result<(), InvalidPlan> {
    if volumes.is_empty() {
        return Err(InvalidPlan::NoVolumes);
    }
    let mut bounds = Vec::with_capacity(volumes.len());
    for (volume, v) in volumes.iter().enumerate() {
        match (v.time.start(), v.time.end()) {
            (Some(start), Some(end)) => bounds.push((start, end)),
            _ => return Err(InvalidPlan::Unbounded { volume }),
        }
    }
    let horizon = now.plus_seconds(MAX_PLAN_HORIZON_S);
    if let Some((volume, (start, _))) = bounds.iter().enumerate().find(|(_, (start, _))| *start > horizon) {
        let starts_in_s = (start.micros() - now.micros()) / 1_000_000;
        return Err(InvalidPlan::BeyondHorizon { volume, starts_in_s });
    }
    if bounds.iter().all(|(_, end)| *end <= now) {
        return Err(InvalidPlan::Ended);
    }
    if let Some(volume) = bounds.iter().position(|(_, end)| *end <= now) {
        return Err(InvalidPlan::VolumeEnded { volume });
    }
    let first = bounds.iter().map(|(s, _)| *s).min().unwrap_or(now);
    let last = bounds.iter().map(|(_, e)| *e).max().unwrap_or(now);
    let lasts_s = (last.micros() - first.micros()) / 1_000_000;
    if lasts_s > MAX_PLAN_DURATION_S {
        return Err(InvalidPlan::TooLong { lasts_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
