//! Who is calling: OAuth 2.0 bearer JWT verification: RS256/ES256 signatures against configured public keys
//! (tokens usually carry no `kid`, so each key of the right family is tried), `aud` against the
//! configured audiences, `exp` enforced. Verified tokens are cached until they expire so that a
//! busy client pays for its signature check once, not on every request.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;

/// Why a caller is turned away: no valid token (401) or a valid token without the scope (403).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

/// The scopes this system knows: the standard's, and the participant's own operator scope.
/// Unknown scopes in a token are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    StrategicCoordination,
    ConstraintManagement,
    ConstraintProcessing,
    ConformanceMonitoringSa,
    AvailabilityArbitration,
    /// `deconflict.operator`: may command a participant's own operations through its
    /// operator interface. Never granted by holding any `utm.*` scope.
    Operator,
    /// `deconflict.telemetry`: may report positions of a participant's flights through its
    /// operator interface (a ground station), and nothing else there.
    Telemetry,
    /// InterUSS's auxiliary API (`aux_.yaml`): the remote-ID scopes `validate_oauth` takes,
    /// and the pool's.
    /// F3411-19's scopes (`dss.read.identification_service_areas`, `dss.write...`).
    RidRead,
    RidWrite,
    /// F3411-22a's scopes: a service provider writes ISAs, a display provider searches and
    /// subscribes.
    RidServiceProvider,
    RidDisplayProvider,
    PoolStatusRead,
    PoolHeartbeatWrite,
    /// InterUSS's Remote ID automated-testing interface: inject test flights.
    RidInjectTestData,
    /// InterUSS's flight_planning automated-testing interface: plan as a virtual user...
    FlightPlanningPlan,
    /// ...and act as the test director (status, closing flights, clearing an area).
    FlightPlanningDirect,
    /// `deconflict.map.read`: the DSS's read-only airspace map (references only), the default
    /// of `deconflict dss --map-scope`.
    MapRead,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "utm.strategic_coordination" => Scope::StrategicCoordination,
            "utm.constraint_management" => Scope::ConstraintManagement,
            "utm.constraint_processing" => Scope::ConstraintProcessing,
            "utm.conformance_monitoring_sa" => Scope::ConformanceMonitoringSa,
            "utm.availability_arbitration" => Scope::AvailabilityArbitration,
            "deconflict.operator" => Scope::Operator,
            "deconflict.telemetry" => Scope::Telemetry,
            "dss.read.identification_service_areas" => Scope::RidRead,
            "dss.write.identification_service_areas" => Scope::RidWrite,
            "rid.service_provider" => Scope::RidServiceProvider,
            "rid.display_provider" => Scope::RidDisplayProvider,
            "interuss.pool_status.read" => Scope::PoolStatusRead,
            "interuss.pool_status.heartbeat.write" => Scope::PoolHeartbeatWrite,
            "interuss.flight_planning.plan" => Scope::FlightPlanningPlan,
            "rid.inject_test_data" => Scope::RidInjectTestData,
            "interuss.flight_planning.direct_automated_test" => Scope::FlightPlanningDirect,
            "deconflict.map.read" => Scope::MapRead,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StrategicCoordination => "utm.strategic_coordination",
            Scope::ConstraintManagement => "utm.constraint_management",
            Scope::ConstraintProcessing => "utm.constraint_processing",
            Scope::ConformanceMonitoringSa => "utm.conformance_monitoring_sa",
            Scope::AvailabilityArbitration => "utm.availability_arbitration",
            Scope::Operator => "deconflict.operator",
            Scope::Telemetry => "deconflict.telemetry",
            Scope::RidRead => "dss.read.identification_service_areas",
            Scope::RidWrite => "dss.write.identification_service_areas",
            Scope::RidServiceProvider => "rid.service_provider",
            Scope::RidDisplayProvider => "rid.display_provider",
            Scope::PoolStatusRead => "interuss.pool_status.read",
            Scope::PoolHeartbeatWrite => "interuss.pool_status.heartbeat.write",
            Scope::FlightPlanningPlan => "interuss.flight_planning.plan",
            Scope::RidInjectTestData => "rid.inject_test_data",
            Scope::FlightPlanningDirect => "interuss.flight_planning.direct_automated_test",
            Scope::MapRead => "deconflict.map.read",
        }
    }
}

/// An authenticated caller: the token's `sub` (its identity as a manager) and granted scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub manager: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
    /// Passes when the caller holds at least one of `any_of`.
    pub fn require_any(&self, any_of: &[Scope]) -> Result<(), AuthError> {
        if any_of.iter().any(|s| self.has(*s)) {
            return Ok(());
        }
        let names: Vec<_> = any_of.iter().map(|s| s.as_str()).collect();
        Err(AuthError::Forbidden(format!("this operation requires one of the scopes: {}", names.join(", "))))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Rsa,
    Ec,
}

struct VerifyKey {
    key: DecodingKey,
    family: Family,
    /// The JWK's `kid`; PEM keys have none.
    kid: Option<String>,
}

/// Keys an identity provider publishes as a JWKS (`--jwks-url`), shared between the verifier and
/// the task that fetches them. Each URL's set replaces its previous one whole, so a key the
/// provider dropped stops verifying at the next refresh; tokens verified with it before are
/// verified again (the generation changes).
#[derive(Default)]
pub struct JwksKeys {
    sets: parking_lot::RwLock<std::collections::BTreeMap<String, Vec<VerifyKey>>>,
    /// Bumped on every change of the sets.
    generation: std::sync::atomic::AtomicU64,
    /// A token named a `kid` no set holds: the fetcher should refresh (at its bounded rate).
    refresh_wanted: std::sync::atomic::AtomicBool,
}

impl JwksKeys {
    /// Replaces `url`'s keys with those of a JWKS document; returns how many were taken (keys of
    /// other types or uses are skipped). An unreadable document changes nothing.
    pub fn replace(&self, url: &str, document: &[u8]) -> Result<usize, String> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(document).map_err(|e| format!("{url} is not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            keys.push(VerifyKey { key, family, kid: jwk.common.key_id.clone() });
        }
        let n = keys.len();
        self.sets.write().insert(url.to_owned(), keys);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(n)
    }

    /// Asks the fetcher for a refresh.
    pub fn request_refresh(&self) {
        self.refresh_wanted.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a refresh was asked for since the last call (and clears the request).
    pub fn take_refresh_request(&self) -> bool {
        self.refresh_wanted.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Most verified tokens remembered at once; the cache is cleared when full.
const CACHE_CAPACITY: usize = 50_000;
/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_S: u64 = 5;

/// Longest token lifetime accepted by default: the standard's access tokens are short lived.
pub const DEFAULT_MAX_LIFETIME_S: u64 = 3600;

pub struct Verifier {
    keys: Vec<VerifyKey>,
    /// Keys from identity providers' JWKS, when configured.
    jwks: Option<std::sync::Arc<JwksKeys>>,
    audiences: Vec<String>,
    /// Verified tokens: the caller, `exp`, and the JWKS generation they were verified under.
    cache: Mutex<HashMap<String, (Caller, u64, u64)>>,
    /// Tokens refused for good (bad signature, unreadable, expired, wrong audience...), by a
    /// keyed hash of the token, with the reason: a token sent again costs no signature check.
    /// Refusals that time can lift (`nbf` or `iat` ahead of our clock) are not kept.
    refused: Mutex<HashMap<u64, (String, u64)>>,
    refused_hasher: std::collections::hash_map::RandomState,
    /// Longest accepted lifetime: `exp - iat`, or `exp - now` without `iat`.
    max_lifetime_s: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Spaced(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

/// The header's `crit` list (RFC 7515 §4.1.11): extensions the verifier must understand. We
/// understand none, so any entry is refused.
fn critical_extensions(token: &str) -> Vec<String> {
    use base64::Engine as _;
    let Some(head) = token.split('.').next() else { return vec![] };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head.trim_end_matches('=')) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return vec![] };
    match &v["crit"] {
        serde_json::Value::Null => vec![],
        serde_json::Value::Array(a) => {
            let names: Vec<String> = a.iter().map(|x| x.as_str().unwrap_or("?").to_owned()).collect();
            if names.is_empty() {
                // RFC 7515: an empty list is not allowed either.
                vec!["(empty list)".to_owned()]
            } else {
                names
            }
        }
        other => vec![other.to_string()],
    }
}

/// The `aud` the token claims, as text for an error message (read without verification: it
/// is only ever shown to the caller who sent it).
fn claimed_audience(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    match claims.as_ref().map(|c| &c["aud"]) {
        Some(serde_json::Value::String(a)) => format!("`{}`", a.chars().take(200).collect::<String>()),
        Some(serde_json::Value::Array(list)) => format!(
            "[{}]",
            list.iter()
                .take(10)
                .map(|a| a.to_string().chars().take(200).collect::<String>())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "(none)".to_owned(),
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Verifier {
    /// Builds a verifier from PEM public keys (`BEGIN PUBLIC KEY`, RSA or EC P-256).
    pub fn new(pems: &[(String, Vec<u8>)], audiences: Vec<String>) -> Result<Self, String> {
        let keys = Self::read_pems(pems)?;
        if keys.is_empty() {
            return Err("at least one public key is required".into());
        }
        Self::assemble(keys, audiences, None)
    }

    fn read_pems(pems: &[(String, Vec<u8>)]) -> Result<Vec<VerifyKey>, String> {
        pems.iter()
            .map(|(name, pem)| {
                if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                    Ok(VerifyKey { key: k, family: Family::Rsa, kid: None })
                } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                    Ok(VerifyKey { key: k, family: Family::Ec, kid: None })
                } else {
                    Err(format!("{name}: not a PEM RSA or EC public key (expected -----BEGIN PUBLIC KEY-----)"))
                }
            })
            .collect()
    }

    fn assemble(
        keys: Vec<VerifyKey>,
        audiences: Vec<String>,
        jwks: Option<std::sync::Arc<JwksKeys>>,
    ) -> Result<Self, String> {
        if audiences.is_empty() {
            return Err("at least one accepted audience is required".into());
        }
        Ok(Self {
            keys,
            jwks,
            audiences,
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            refused_hasher: std::collections::hash_map::RandomState::new(),
            max_lifetime_s: DEFAULT_MAX_LIFETIME_S,
        })
    }

    /// A verifier that also trusts the keys of identity providers' JWKS, kept current by
    /// whoever holds [`Verifier::jwks`]; `pems` may then be empty.
    pub fn with_jwks(pems: &[(String, Vec<u8>)], audiences: Vec<String>) -> Result<Self, String> {
        let keys = Self::read_pems(pems)?;
        Self::assemble(keys, audiences, Some(std::sync::Arc::new(JwksKeys::default())))
    }

    /// The JWKS keys this verifier trusts, for the task that fetches them.
    pub fn jwks(&self) -> Option<std::sync::Arc<JwksKeys>> {
        self.jwks.clone()
    }

    /// Refuses tokens living longer than `seconds` (`exp - iat`, or `exp - now` without `iat`).
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.max_lifetime_s = seconds;
        self
    }

    /// Authenticates an `Authorization` header value.
    pub fn verify(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or_else(|| {
            AuthError::Unauthenticated(
                "missing Authorization header; send `Authorization: Bearer <access token>`".into(),
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthError::Unauthenticated("Authorization header must be `Bearer <access token>`".into()))?;
        let now = now_s();
        let generation = self.jwks.as_ref().map_or(0, |j| j.generation());
        if let Some((caller, exp, verified_under)) = self.cache.lock().get(token) {
            if *exp + LEEWAY_S >= now && *verified_under == generation {
                return Ok(caller.clone());
            }
        }
        let key = {
            use std::hash::BuildHasher as _;
            self.refused_hasher.hash_one(token)
        };
        if let Some((reason, refused_under)) = self.refused.lock().get(&key) {
            // A refusal for an unknown key may be lifted by a new key set.
            if *refused_under == generation {
                return Err(AuthError::Unauthenticated(reason.clone()));
            }
        }
        match self.verify_token(token, now) {
            Ok(caller) => Ok(caller),
            Err((e, lasting)) => {
                if let (AuthError::Unauthenticated(reason), true) = (&e, lasting) {
                    let mut refused = self.refused.lock();
                    if refused.len() >= CACHE_CAPACITY {
                        refused.clear();
                    }
                    refused.insert(key, (reason.clone(), generation));
                }
                Err(e)
            }
        }
    }

    /// Verifies a token not seen before; a refusal says whether time could lift it (`false`:
    /// not valid *yet*).
    fn verify_token(&self, token: &str, now: u64) -> Result<Caller, (AuthError, bool)> {
        let lasting = |e: AuthError| (e, true);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| lasting(AuthError::Unauthenticated(format!("access token could not be decoded: {e}"))))?;
        let family = match header.alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Family::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
            other => {
                return Err(lasting(AuthError::Unauthenticated(format!(
                    "access token algorithm {other:?} is not accepted; use RS256 or ES256"
                ))))
            }
        };
        let critical = critical_extensions(token);
        if !critical.is_empty() {
            return Err(lasting(AuthError::Unauthenticated(format!(
                "access token header lists critical extensions this server does not understand: {}",
                critical.join(", ")
            ))));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = LEEWAY_S;
        // A token not valid yet (`nbf` in the future) is refused like an expired one.
        validation.validate_nbf = true;
        let mut last_error = "access token signature does not match any configured public key".to_owned();
        let mut not_yet = false;
        let jwks = self.jwks.as_ref().map(|j| (j.generation(), j.sets.read()));
        let generation = jwks.as_ref().map_or(0, |(g, _)| *g);
        let all: Vec<&VerifyKey> = self
            .keys
            .iter()
            .chain(jwks.iter().flat_map(|(_, sets)| sets.values().flatten()))
            .filter(|k| k.family == family)
            .collect();
        // A token naming its key is checked against that key only; one naming a key nobody
        // publishes (yet) asks for a refresh of the identity providers' sets, and is tried
        // against the PEM keys (which have no ids) meanwhile.
        let candidates: Vec<&VerifyKey> = match &header.kid {
            Some(kid) if all.iter().any(|k| k.kid.as_deref() == Some(kid)) => {
                all.into_iter().filter(|k| k.kid.as_deref() == Some(kid)).collect()
            }
            Some(kid) if self.jwks.is_some() => {
                if let Some(j) = &self.jwks {
                    j.request_refresh();
                }
                let kid: String = kid.chars().take(100).collect();
                last_error = format!(
                    "access token key id `{kid}` is not in the identity provider's current key set \
                     (it is being fetched again: retry in a few seconds)"
                );
                all.into_iter().filter(|k| k.kid.is_none()).collect()
            }
            _ => all,
        };
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    if let Some(iat) = data.claims.iat {
                        if iat > now + LEEWAY_S {
                            return Err((
                                AuthError::Unauthenticated(
                                    "access token was issued in the future (`iat` ahead of this server's clock)".into(),
                                ),
                                false,
                            ));
                        }
                    }
                    let lifetime = data.claims.exp.saturating_sub(data.claims.iat.unwrap_or(now));
                    if lifetime > self.max_lifetime_s + LEEWAY_S {
                        return Err(lasting(AuthError::Unauthenticated(format!(
                            "access token lives {lifetime} s; at most {} s is accepted",
                            self.max_lifetime_s
                        ))));
                    }
                    let caller = caller_from(data.claims.sub, data.claims.scope).map_err(lasting)?;
                    let mut cache = self.cache.lock();
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(token.to_owned(), (caller.clone(), data.claims.exp, generation));
                    return Ok(caller);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {}
                        ErrorKind::ExpiredSignature => last_error = "access token has expired".into(),
                        ErrorKind::ImmatureSignature => {
                            not_yet = true;
                            last_error = "access token is not valid yet (`nbf` is in the future)".into()
                        }
                        ErrorKind::InvalidAudience => {
                            last_error = format!(
                                "access token audience {} is not accepted by this server (accepted: {}; \
                                 --jwt-audience sets them)",
                                claimed_audience(token),
                                self.audiences.join(", ")
                            )
                        }
                        ErrorKind::MissingRequiredClaim(c) => last_error = format!("access token has no `{c}` claim"),
                        other => last_error = format!("access token is invalid: {other:?}"),
                    }
                }
            }
        }
        Err((AuthError::Unauthenticated(last_error), !not_yet))
    }
}

fn caller_from(sub: Option<String>, scope: Option<ScopeClaim>) -> Result<Caller, AuthError> {
    let manager = sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::Unauthenticated("access token has no `sub` claim identifying the USS".into()))?;
    let names: Vec<String> = match scope {
        Some(ScopeClaim::Spaced(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(ScopeClaim::List(v)) => v,
        None => vec![],
    };
    let scopes = names.iter().filter_map(|s| Scope::parse(s)).collect();
    Ok(Caller { manager, scopes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &str = include_str!("../../../src/keys/dev-private.pem");
    const PUBLIC: &str = include_str!("../../../src/keys/dev-public.pem");

    fn sign(claims: serde_json::Value, crit: Option<serde_json::Value>) -> String {
        use jsonwebtoken::{EncodingKey, Header};
        let (key, alg) = match EncodingKey::from_ec_pem(PRIVATE.as_bytes()) {
            Ok(k) => (k, Algorithm::ES256),
            Err(_) => (EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).expect("dev key"), Algorithm::RS256),
        };
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("sign");
        match crit {
            None => token,
            Some(c) => {
                // Re-sign with a header carrying `crit` (jsonwebtoken's Header has no such field).
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let header = serde_json::json!({"alg": format!("{alg:?}"), "typ": "JWT", "crit": c});
                let payload = token.split('.').nth(1).expect("payload");
                let signing_input = format!("{}.{payload}", b64.encode(serde_json::to_vec(&header).expect("json")));
                let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, alg).expect("sign");
                format!("{signing_input}.{signature}")
            }
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(&[("dev".into(), PUBLIC.as_bytes().to_vec())], vec!["localhost".into()]).expect("verifier")
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = now_s();
        let mut c = serde_json::json!({"sub": "uss1", "aud": "localhost", "scope": "utm.strategic_coordination",
                                       "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    }

    fn verify(v: &Verifier, token: &str) -> Result<Caller, AuthError> {
        v.verify(Some(&format!("Bearer {token}")))
    }

    /// A P-256 key as a JWK (public half) and as the PEM that signs with it.
    fn ec_jwk(kid: &str) -> (serde_json::Value, String) {
        use base64::Engine as _;
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        let raw = pair.public_key_raw(); // 0x04 || x || y
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
                                     "kid": kid, "use": "sig", "alg": "ES256"});
        (jwk, pair.serialize_pem())
    }

    fn sign_with(pem: &str, kid: Option<&str>) -> String {
        use jsonwebtoken::{EncodingKey, Header};
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, &claims(serde_json::json!({})), &key).expect("sign")
    }

    #[test]
    fn jwks_keys_rotate_and_an_unknown_kid_asks_for_a_refresh() {
        let v = Verifier::with_jwks(&[], vec!["localhost".into()]).expect("verifier");
        let jwks = v.jwks().expect("jwks");
        let (k1, pem1) = ec_jwk("k1");
        let (k2, pem2) = ec_jwk("k2");
        let doc = |keys: Vec<serde_json::Value>| serde_json::to_vec(&serde_json::json!({"keys": keys})).expect("json");
        assert_eq!(jwks.replace("https://idp.example/jwks", &doc(vec![k1.clone()])).expect("set"), 1);
        let t1 = sign_with(&pem1, Some("k1"));
        assert_eq!(verify(&v, &t1).expect("k1 verifies").manager, "uss1");

        // The provider rotates: a token with the new kid is refused for now, and asks for a refresh.
        let t2 = sign_with(&pem2, Some("k2"));
        assert!(!jwks.take_refresh_request());
        match verify(&v, &t2) {
            Err(AuthError::Unauthenticated(m)) => assert!(m.contains("`k2`") && m.contains("key set"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(jwks.take_refresh_request(), "an unknown kid asks for a refresh");
        assert!(!jwks.take_refresh_request(), "once");
        jwks.replace("https://idp.example/jwks", &doc(vec![k2])).expect("set");
        assert!(verify(&v, &t2).is_ok(), "the same token verifies once the set has its key");
        assert!(verify(&v, &sign_with(&pem2, None)).is_ok(), "a token without kid is tried against every key");
        // k1 was dropped: its token, verified and cached before, is refused now.
        assert!(verify(&v, &t1).is_err(), "a key the provider dropped no longer verifies");
        // A broken document changes nothing.
        assert!(jwks.replace("https://idp.example/jwks", b"<html>").is_err());
        assert!(verify(&v, &t2).is_ok());
    }

    #[test]
    fn with_jwks_a_pem_issuer_that_names_a_kid_still_verifies() {
        let v = Verifier::with_jwks(&[("dev".into(), PUBLIC.as_bytes().to_vec())], vec!["localhost".into()])
            .expect("verifier");
        // The development key's token, with a `kid` header no JWKS holds.
        use jsonwebtoken::{EncodingKey, Header};
        let (key, alg) = match EncodingKey::from_ec_pem(PRIVATE.as_bytes()) {
            Ok(k) => (k, Algorithm::ES256),
            Err(_) => (EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).expect("dev key"), Algorithm::RS256),
        };
        let mut header = Header::new(alg);
        header.kid = Some("dev-2026".into());
        let token = jsonwebtoken::encode(&header, &claims(serde_json::json!({})), &key).expect("sign");
        assert!(verify(&v, &token).is_ok(), "the PEM key verifies it");
        assert!(v.jwks().expect("jwks").take_refresh_request(), "and the sets are refreshed anyway");
    }

    #[test]
    fn a_refused_audience_names_the_one_carried_and_the_ones_accepted() {
        let token = sign(claims(serde_json::json!({"aud": "127.0.0.1"})), None);
        match verify(&verifier(), &token) {
            Err(AuthError::Unauthenticated(m)) => {
                assert!(m.contains("`127.0.0.1`") && m.contains("accepted: localhost"), "{m}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_short_lived_current_token_is_accepted() {
        let caller = verify(&verifier(), &sign(claims(serde_json::json!({})), None)).expect("valid");
        assert_eq!(caller.manager, "uss1");
        assert!(caller.has(Scope::StrategicCoordination));
    }

    #[test]
    fn tokens_from_the_future_too_long_lived_or_with_critical_extensions_are_refused() {
        let now = now_s();
        let v = verifier();
        let cases = [
            (sign(claims(serde_json::json!({"nbf": now + 300})), None), "not valid yet"),
            (sign(claims(serde_json::json!({"iat": now + 300, "exp": now + 900})), None), "in the future"),
            (sign(claims(serde_json::json!({"iat": now, "exp": now + 7200})), None), "at most 3600"),
            (
                sign(claims(serde_json::json!({"iat": serde_json::Value::Null, "exp": now + 7200})), None),
                "at most 3600",
            ),
            (sign(claims(serde_json::json!({})), Some(serde_json::json!(["b64"]))), "critical"),
            (sign(claims(serde_json::json!({})), Some(serde_json::json!([]))), "critical"),
        ];
        for (token, needle) in cases {
            match verify(&v, &token) {
                Err(AuthError::Unauthenticated(m)) => assert!(m.contains(needle), "`{m}` lacks `{needle}`"),
                other => panic!("expected a refusal mentioning `{needle}`, got {other:?}"),
            }
        }
        // A configured longer lifetime accepts the two-hour token.
        let v = verifier().with_max_lifetime(3 * 3600);
        assert!(verify(&v, &sign(claims(serde_json::json!({"iat": now, "exp": now + 7200})), None)).is_ok());
    }
}
