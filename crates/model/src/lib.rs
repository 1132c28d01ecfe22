//! The DSS's domain: operational intent references, constraint references, subscriptions, OVNs,
//! versions, states, USS availability, and the rules that decide which other entities a key must
//! name.
//!
//! Everything here is plain data with the invariants of ASTM F3548-21 encoded in constructors and
//! methods; it does no IO and knows nothing of HTTP, JSON field names or storage.

use std::sync::Arc;

use geo4d::{AltitudeBand, TimeWindow, Timestamp, Volume4D};
pub use uuid::Uuid;

pub mod rid;

/// The identity of a USS: the `sub` claim of its access tokens.
pub type Manager = String;

/// Opaque version number of an entity; revealed only to the entity's manager.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ovn(String);

impl Ovn {
    /// The standard bounds an OVN to 16..=128 characters.
    pub fn parse(s: &str) -> Option<Ovn> {
        (16..=128).contains(&s.len()).then(|| Ovn(s.to_owned()))
    }
    /// A fresh OVN: unique and unguessable (122 random bits), unrelated to the entity's content.
    pub fn generate() -> Ovn {
        Ovn(Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ASTM F3548-21 operational intent states that the DSS stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationalIntentState {
    Accepted,
    Activated,
    Nonconforming,
    Contingent,
}

impl OperationalIntentState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Accepted" => Self::Accepted,
            "Activated" => Self::Activated,
            "Nonconforming" => Self::Nonconforming,
            "Contingent" => Self::Contingent,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Activated => "Activated",
            Self::Nonconforming => "Nonconforming",
            Self::Contingent => "Contingent",
        }
    }
    /// Entering Accepted or Activated must prove knowledge of the airspace with a key.
    pub fn requires_key(self) -> bool {
        matches!(self, Self::Accepted | Self::Activated)
    }
    /// Off-nominal states are set by the conformance monitoring role (SCD0100).
    pub fn requires_conformance_monitoring(self) -> bool {
        matches!(self, Self::Nonconforming | Self::Contingent)
    }
    /// Every state but Accepted needs a subscription keeping the operator informed.
    pub fn requires_subscription(self) -> bool {
        !matches!(self, Self::Accepted)
    }
}

/// Availability of a USS as arbitrated in the DSS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UssAvailability {
    #[default]
    Unknown,
    Normal,
    Down,
}

impl UssAvailability {
    /// Case-insensitive (`normal`, `DOWN`), as the reference DSS parses it; always answered in
    /// the spec's case ([`Self::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unknown" => Self::Unknown,
            "normal" => Self::Normal,
            "down" => Self::Down,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Normal => "Normal",
            Self::Down => "Down",
        }
    }
}

/// A USS availability record; `version` is empty until first set.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityRecord {
    pub uss: Manager,
    pub availability: UssAvailability,
    pub version: String,
}

/// Bounds shared by every entity with a list of extents.
/// Vertices stored for `extents` (a circle counts as one), for per-manager quotas.
pub fn vertex_count(extents: &[Volume4D]) -> usize {
    extents
        .iter()
        .map(|v| match &v.footprint {
            geo4d::Footprint::Polygon(p) => p.vertices().len(),
            geo4d::Footprint::Circle(_) => 1,
        })
        .sum()
}

pub fn time_bounds(extents: &[Volume4D]) -> TimeWindow {
    extents.iter().map(|v| v.time).reduce(|a, b| a.union(&b)).unwrap_or_else(TimeWindow::unbounded)
}

pub fn altitude_bounds(extents: &[Volume4D]) -> AltitudeBand {
    extents.iter().map(|v| v.altitude).reduce(|a, b| a.union(&b)).unwrap_or_else(AltitudeBand::unbounded)
}

/// A reference to an operational intent held by its manager's USS.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationalIntent {
    pub id: Uuid,
    pub manager: Manager,
    pub version: i32,
    pub state: OperationalIntentState,
    pub ovn: Ovn,
    pub extents: Vec<Volume4D>,
    pub uss_base_url: String,
    pub subscription_id: Option<Uuid>,
}

impl OperationalIntent {
    pub fn time(&self) -> TimeWindow {
        time_bounds(&self.extents)
    }
    /// Whether another USS's key must contain this intent's OVN: everything intersecting, except
    /// Accepted intents of a USS marked Down (the reference DSS's `RequiresKey`, per F3548 SCD0100
    /// family: a Down USS's not-yet-flying plans must not block the airspace).
    pub fn must_appear_in_keys(&self, manager_availability: UssAvailability) -> bool {
        intent_must_appear_in_keys(self.state, manager_availability)
    }
}

/// The rule of [`OperationalIntent::must_appear_in_keys`] on its two inputs, for those who hold
/// a reference rather than the DSS's entity (a participant deciding which intents it must
/// deconflict with: the same set).
pub fn intent_must_appear_in_keys(state: OperationalIntentState, manager_availability: UssAvailability) -> bool {
    !(manager_availability == UssAvailability::Down && state == OperationalIntentState::Accepted)
}

/// A reference to a constraint held by its manager's USS.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub id: Uuid,
    pub manager: Manager,
    pub version: i32,
    pub ovn: Ovn,
    pub extents: Vec<Volume4D>,
    pub uss_base_url: String,
}

impl Constraint {
    pub fn time(&self) -> TimeWindow {
        time_bounds(&self.extents)
    }
}

/// A subscription: an area a USS wants to hear about. Implicit subscriptions are created for an
/// operational intent and may cover the extents of several intents, so extents are a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: Uuid,
    pub manager: Manager,
    /// Changes on every write by a USS; not on notification index increments.
    pub version: u64,
    pub notification_index: i32,
    pub extents: Vec<Volume4D>,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
    pub implicit: bool,
}

impl Subscription {
    pub fn time(&self) -> TimeWindow {
        time_bounds(&self.extents)
    }
    /// The subscription's end, after which the DSS removes it.
    pub fn end(&self) -> Option<Timestamp> {
        self.time().end()
    }
    /// Opaque version string sent on the wire.
    pub fn version_string(&self) -> String {
        format!("{:x}", self.version)
    }
    /// Does this subscription cover every volume in `extents`? Checked volume by volume: each
    /// must lie in time, altitude and space within one of the subscription's volumes (its
    /// footprint contained in that volume's, exactly, to within
    /// [`geo4d::CONTAINMENT_TOLERANCE_M`]). Intersecting is not enough: a subscription shrunk
    /// to a corner of an intent would no longer hear of changes over the rest of it.
    pub fn covers(&self, extents: &[Volume4D]) -> bool {
        self.covers_with_start_tolerance(extents, 0)
    }

    /// [`Self::covers`], but the subscription may start up to `start_tolerance_s` after a
    /// volume does.
    pub fn covers_with_start_tolerance(&self, extents: &[Volume4D], start_tolerance_s: i64) -> bool {
        extents.iter().all(|needed| {
            self.extents.iter().any(|have| {
                let (ht, nt) = (have.time, needed.time);
                let time_ok =
                    ht.start().is_none_or(|s| nt.start().is_some_and(|n| n.plus_seconds(start_tolerance_s) >= s))
                        && ht.end().is_none_or(|e| nt.end().is_some_and(|n| n <= e));
                let (ha, na) = (have.altitude, needed.altitude);
                let alt_ok = ha.lower_m().is_none_or(|l| na.lower_m().is_some_and(|n| n >= l))
                    && ha.upper_m().is_none_or(|u| na.upper_m().is_some_and(|n| n <= u));
                time_ok && alt_ok && have.footprint.contains(&needed.footprint, geo4d::CONTAINMENT_TOLERANCE_M)
            })
        })
    }
    /// Does this subscription ask to hear about changes of `kind`?
    pub fn interested_in(&self, kind: EntityKind) -> bool {
        match kind {
            EntityKind::OperationalIntent => self.notify_for_operational_intents,
            EntityKind::Constraint => self.notify_for_constraints,
        }
    }

    /// Should a change to an entity of `kind` over `extents` notify this subscription?
    pub fn wants(&self, kind: EntityKind, extents: &[Volume4D]) -> bool {
        self.wants_as(kind, extents, geo4d::Match::Exact)
    }

    /// [`Self::wants`] with the area matched as `how` says (relevance for discovery).
    pub fn wants_as(&self, kind: EntityKind, extents: &[Volume4D], how: geo4d::Match) -> bool {
        self.interested_in(kind) && geo4d::any_match(&self.extents, extents, how)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    OperationalIntent,
    Constraint,
}

/// A subscriber to notify after a change: one USS base URL and the subscriptions of it that the
/// change touched, with their new notification indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberToNotify {
    pub uss_base_url: String,
    pub subscriptions: Vec<(Uuid, i32)>,
}

/// Groups notified subscriptions by base URL, in a stable order.
pub fn group_subscribers(notified: &[(Subscription, i32)]) -> Vec<SubscriberToNotify> {
    let mut out: Vec<SubscriberToNotify> = Vec::new();
    for (sub, index) in notified {
        match out.iter_mut().find(|s| s.uss_base_url == sub.uss_base_url) {
            Some(s) => s.subscriptions.push((sub.id, *index)),
            None => out.push(SubscriberToNotify {
                uss_base_url: sub.uss_base_url.clone(),
                subscriptions: vec![(sub.id, *index)],
            }),
        }
    }
    out
}

// ---- What the DSS takes and gives, in domain terms (shared by the DSS and the wire crate) ----

/// Parameters of an implicit subscription requested with an intent.
#[derive(Debug, Clone)]
pub struct ImplicitSubscriptionRequest {
    pub uss_base_url: String,
    pub notify_for_constraints: bool,
}

/// A create or update of an intent reference, already converted from the wire.
#[derive(Debug, Clone)]
pub struct PutIntentRequest {
    pub extents: Vec<Volume4D>,
    pub key: Vec<String>,
    pub state: OperationalIntentState,
    pub uss_base_url: String,
    pub subscription_id: Option<Uuid>,
    pub new_subscription: Option<ImplicitSubscriptionRequest>,
    /// The InterUSS requested-OVN extension, unchecked (the DSS checks it against its clock).
    pub requested_ovn_suffix: Option<String>,
}

/// A create or update of a subscription, converted from the wire. Missing times are defaulted
/// by the DSS: start now, end a configured duration after start.
#[derive(Debug, Clone)]
pub struct PutSubscriptionRequest {
    pub extents: Volume4D,
    pub uss_base_url: String,
    pub notify_for_operational_intents: bool,
    pub notify_for_constraints: bool,
}

/// An intent as one caller may see it: the OVN only for its manager.
#[derive(Debug, Clone)]
pub struct IntentView {
    pub intent: Arc<OperationalIntent>,
    pub availability: UssAvailability,
    pub show_ovn: bool,
}

#[derive(Debug, Clone)]
pub struct ConstraintView {
    pub constraint: Arc<Constraint>,
    pub availability: UssAvailability,
    pub show_ovn: bool,
}

/// The subscription as its manager sees it, with the intents depending on it.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub subscription: Arc<Subscription>,
    pub dependent_intents: Vec<Uuid>,
}

/// The rule for a `uss_base_url`: an absolute http(s) URL with a host, at most 2048 characters,
/// no spaces or control characters, no user information (`user@`) and no fragment (`#`). A
/// query is accepted (the reference DSS accepts one, and the standard's qualification tools send
/// `...?correct-ovn-mutation=true`); so is a trailing `/`, kept as given. The DSS applies it when
/// the URL is written; the participant applies it again, through [`peer_url`], before every call,
/// since another DSS may have stored anything.
pub fn check_base_url(url: &str) -> Result<(), String> {
    parse_base_url(url).map(|_| ())
}

fn parse_base_url(url: &str) -> Result<url::Url, String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("must be an absolute http(s) URL, got `{url}`"));
    }
    // Backslashes are read as slashes by URL parsers for http(s): refused rather than guessed.
    if url.len() > 2048 || url.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err(format!(
            "must be an absolute http(s) URL of at most 2048 characters without spaces or backslashes, got `{url}`"
        ));
    }
    if url.contains('#') {
        return Err(format!("may not contain a fragment (`#`), got `{url}`"));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e}), got `{url}`"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("must be an absolute http(s) URL, got `{url}`"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("may not contain user information (`user@`), got `{url}`"));
    }
    if parsed.host_str().is_none_or(str::is_empty) || parsed.cannot_be_a_base() {
        return Err(format!("must name a host, got `{url}`"));
    }
    Ok(parsed)
}

/// The URL of a peer's API `path` (starting with `/`) under its `uss_base_url`: the path is
/// appended to the base URL's *path* and the base URL's query is kept, so
/// `https://h/p?x=1` + `/uss/v1/operational_intents/ID` is
/// `https://h/p/uss/v1/operational_intents/ID?x=1`. Never built by concatenating strings (a
/// query in the base would swallow the path). Refuses any base URL [`check_base_url`] refuses,
/// with the reason.
pub fn peer_url(base: &str, path: &str) -> Result<String, String> {
    let mut url = parse_base_url(base)?;
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_accepted_and_refused_with_the_reason() {
        for good in [
            "https://uss.example.org",
            "https://uss.example.org/",
            "http://127.0.0.1:9001/base/path",
            "https://uss.example.org/p?correct-ovn-mutation=true",
            "https://uss.example.org?x=1&y=2",
        ] {
            assert_eq!(check_base_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("ftp://uss.example.org", "http(s)"),
            ("uss.example.org/p", "http(s)"),
            ("https://", "host"),
            ("https://user:pw@uss.example.org", "user information"),
            ("https://user@uss.example.org", "user information"),
            ("https://uss.example.org/p#frag", "fragment"),
            ("https://uss.example.org/p?x=1#", "fragment"),
            ("https://uss.example.org/a b", "spaces"),
            ("https://uss.example.org\\@evil.example", "backslashes"),
        ] {
            let got = check_base_url(bad);
            assert!(matches!(&got, Err(m) if m.contains(why)), "`{bad}`: {got:?}");
        }
        let long = format!("https://uss.example.org/{}", "a".repeat(2048));
        assert!(check_base_url(&long).is_err());
    }

    #[test]
    fn peer_urls_append_the_path_to_the_base_path_and_keep_the_query() {
        let path = "/uss/v1/operational_intents/ID";
        for (base, want) in [
            ("https://h", "https://h/uss/v1/operational_intents/ID"),
            ("https://h/", "https://h/uss/v1/operational_intents/ID"),
            ("https://h/p", "https://h/p/uss/v1/operational_intents/ID"),
            ("https://h/p/", "https://h/p/uss/v1/operational_intents/ID"),
            ("https://h/p?x=1", "https://h/p/uss/v1/operational_intents/ID?x=1"),
            ("https://h/p/?x=1&y=2", "https://h/p/uss/v1/operational_intents/ID?x=1&y=2"),
            (
                "https://h?correct-ovn-mutation=true",
                "https://h/uss/v1/operational_intents/ID?correct-ovn-mutation=true",
            ),
            ("http://127.0.0.1:9001", "http://127.0.0.1:9001/uss/v1/operational_intents/ID"),
        ] {
            assert_eq!(peer_url(base, path).as_deref(), Ok(want), "{base}");
        }
        for bad in ["https://h/p#/operator", "https://u@h/p", "file:///etc/passwd", "gopher://h/"] {
            assert!(peer_url(bad, path).is_err(), "{bad}");
        }
    }
}
