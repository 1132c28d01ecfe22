//! Network Remote ID (ASTM F3411) entities as the DSS keeps them: identification service areas
//! (ISAs), through which display providers find the service providers flying in an area, and
//! Remote ID subscriptions, through which they are told when ISAs change. They share nothing
//! with the strategic-coordination entities but the geometry: an ISA never answers an F3548
//! query, nor an intent an F3411 one.
//!
//! Both versions of the standard (F3411-19, API 1.0, and F3411-22a, API 2.1) read and write the
//! same entities, as the reference DSS does: each keeps the URL it was written with and the
//! version that wrote it ([`RidApi`]), so that each API can tell what the URL means (F3411-19
//! names the flights endpoint itself, F3411-22a the provider's base URL).

use geo4d::{Timestamp, Volume4D};
use uuid::Uuid;

use crate::Manager;

/// The version of F3411 whose API wrote an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RidApi {
    /// F3411-19 (API 1.0, paths `/v1/dss/...`).
    V19,
    /// F3411-22a (API 2.1, paths `/rid/v2/dss/...`).
    V22a,
}

/// The longest an ISA or a Remote ID subscription may last (the reference DSS's limit for
/// subscriptions, applied to both as it does; F3411 leaves it to the DSS).
pub const MAX_RID_DURATION_S: i64 = 24 * 3600;

/// How far in the past a written start may lie (the reference DSS's clock-skew allowance).
pub const MAX_RID_CLOCK_SKEW_S: i64 = 5 * 60;

/// An identification service area: a service provider's declaration that it may have flights
/// to report in `extents` (one 4D volume with both ends of its time window).
#[derive(Debug, Clone, PartialEq)]
pub struct Isa {
    pub id: Uuid,
    pub manager: Manager,
    /// Changes on every write; opaque on the wire.
    pub version: u64,
    /// F3411-19: the provider's flights URL; F3411-22a: its base URL.
    pub url: String,
    pub writer: RidApi,
    pub extents: Volume4D,
}

/// A display provider's subscription to changes of ISAs in `extents`.
#[derive(Debug, Clone, PartialEq)]
pub struct RidSubscription {
    pub id: Uuid,
    pub manager: Manager,
    /// Changes on every write by its owner; not on notification index increments.
    pub version: u64,
    pub notification_index: i32,
    /// F3411-19: the callback URL for ISA changes; F3411-22a: the subscriber's base URL.
    pub url: String,
    pub writer: RidApi,
    pub extents: Volume4D,
}

/// Opaque version text as both APIs send it: always 16 lower-case hexadecimal digits (the
/// qualifier's DSS scenarios require a lower-case alphanumeric string of 10 characters or more,
/// which an unpadded small number would not be).
pub fn version_text(version: u64) -> String {
    format!("{version:016x}")
}

impl Isa {
    /// The end of its time window, after which the DSS removes it.
    pub fn end(&self) -> Option<Timestamp> {
        self.extents.time.end()
    }
}

impl RidSubscription {
    /// The end of its time window, after which the DSS removes it.
    pub fn end(&self) -> Option<Timestamp> {
        self.extents.time.end()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_version_is_sixteen_lower_case_alphanumerics_whatever_its_value() {
        for v in [1u64, 0xabc, u64::MAX, 1 << 36] {
            let text = super::version_text(v);
            assert_eq!(text.len(), 16, "{text}");
            assert!(text.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()), "{text}");
        }
    }
}
