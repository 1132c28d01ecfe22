//! Instants and closed time windows, in microseconds since the Unix epoch (UTC).

use crate::GeoError;

/// Microseconds since 1970-01-01T00:00:00Z. Plain integer arithmetic keeps comparisons exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }
    pub fn as_seconds_f64(self) -> f64 {
        self.0 as f64 / 1.0e6
    }
}

/// A closed time interval; either bound may be open in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    start: Timestamp,
    end: Timestamp,
}

impl TimeWindow {
    /// `None` bounds are open. Refuses `end < start`.
    pub fn new(start: Option<Timestamp>, end: Option<Timestamp>) -> Result<Self, GeoError> {
        let start = start.unwrap_or(Timestamp::MIN);
        let end = end.unwrap_or(Timestamp::MAX);
        if end < start {
            return Err(GeoError::InvertedTime);
        }
        Ok(Self { start, end })
    }
    pub fn unbounded() -> Self {
        Self { start: Timestamp::MIN, end: Timestamp::MAX }
    }
    pub fn start(&self) -> Option<Timestamp> {
        (self.start != Timestamp::MIN).then_some(self.start)
    }
    pub fn end(&self) -> Option<Timestamp> {
        (self.end != Timestamp::MAX).then_some(self.end)
    }
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start <= other.end && other.start <= self.end
    }
    pub fn union(&self, other: &Self) -> Self {
        Self { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
    pub(crate) fn as_seconds_f64(&self) -> (f64, f64) {
        (self.start.as_seconds_f64(), self.end.as_seconds_f64())
    }
}
