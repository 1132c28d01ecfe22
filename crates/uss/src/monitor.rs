//! Conformance monitoring: positions of our flights in, judged as they arrive, and each
//! automatic change of state (Nonconforming, Contingent, back to Activated, new off-nominal
//! volumes) made through the same change protocol as the operator's (write-ahead, DSS,
//! record, notify), with its reason in the feed, the notification history and the status.
//! Positions of others' off-nominal flights are polled from their managers while they stay
//! off-nominal, for the map.
//!
//! What decides is `telemetry` (pure, on a clock given to it); this module only feeds it,
//! persists what must survive a crash (each flight's latest position and monitor state, durable
//! before a position is acknowledged) and acts on its decisions. One task at a time acts for a
//! flight; a tick re-decides every flight a few times a second, so a change that failed (the
//! DSS unreachable, an operator's change in flight) is retried until it is made or moot.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use geo4d::Timestamp;
use model::OperationalIntentState;
use serde::{Deserialize, Serialize};

use crate::db::{notification_write, Table, Write};
use crate::domain::Kind;
use crate::entities::{OwnIntent, Received};
use crate::error::UssError;
use crate::telemetry::{Flight, Position, PositionWire, MAX_POSITIONS_PER_REQUEST};
use crate::Uss;

/// How often every flight's state is re-decided (timers: contingency, return, silence).
pub const TICK: Duration = Duration::from_millis(250);
/// How often the telemetry of others' off-nominal flights is asked for.
pub const POLL_OTHERS_EVERY_S: i64 = 5;
/// Others' off-nominal flights polled per round at most (each call bounded by the peer timeout).
const MAX_POLLED: usize = 200;
/// After a failed automatic change, the next attempt waits this long.
const RETRY_AFTER_S: i64 = 2;

/// The monitor's memory: our flights, what is being acted on, others' polled positions.
#[derive(Default)]
pub(crate) struct MonitorState {
    pub flights: HashMap<String, Flight>,
    pub(crate) applying: HashSet<String>,
    retry_at: HashMap<String, Timestamp>,
    /// Others' off-nominal flights: their manager's latest telemetry and when it was asked.
    pub others: HashMap<String, OtherTelemetry>,
    last_poll: Option<Timestamp>,
    polling: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct OtherTelemetry {
    pub manager: String,
    pub position: Option<Position>,
    pub polled_at: Timestamp,
    pub error: Option<String>,
}

/// A flight's durable part: enough to keep judging it after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FlightRecord {
    pub latest: Option<PositionWire>,
    #[serde(default)]
    pub auto: bool,
    #[serde(default)]
    pub outside: bool,
    #[serde(default)]
    pub last_reason: Option<String>,
    /// Remote ID: the flight's ISA as last written (id, version, extents).
    #[serde(default)]
    pub isa: Option<(String, String, api::Volume4D)>,
    /// Its id, recorded before its first write.
    #[serde(default)]
    pub isa_id: Option<String>,
}

impl FlightRecord {
    pub(crate) fn of(f: &Flight) -> FlightRecord {
        FlightRecord {
            latest: f.latest.map(|p| p.to_wire()),
            auto: f.auto,
            outside: f.outside_since.is_some(),
            last_reason: f.last_reason.clone(),
            isa: f.isa.as_ref().map(|i| (i.id.clone(), i.version.clone(), api::volume_to_wire(&i.volume))),
            isa_id: f.isa_id.clone(),
        }
    }
}

/// What a positions request did.
#[derive(Debug, Clone, Serialize)]
pub struct PositionsOutcome {
    pub operational_intent_id: String,
    pub accepted: usize,
    /// The operation's state as it stands (an automatic change is made right after the answer).
    pub state: String,
    /// Whether every position of this request lay within the operation's volumes.
    pub conforming: bool,
    /// Why a position was outside (the newest such of this request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside: Option<String>,
    /// The automatic change this request triggers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_change: Option<String>,
    pub latest: Option<PositionWire>,
}

fn flying(state: OperationalIntentState) -> bool {
    !matches!(state, OperationalIntentState::Accepted)
}

impl Uss {
    /// Parses a positions body: one position or an array of up to 1,000, all valid or none
    /// taken.
    pub(crate) fn parse_positions(&self, body: &[u8]) -> Result<Vec<Position>, UssError> {
        let value: serde_json::Value = api::parse_json(body).map_err(|e| UssError::BadRequest(e.message))?;
        let (items, many) = match value {
            serde_json::Value::Array(a) => (a, true),
            one @ serde_json::Value::Object(_) => (vec![one], false),
            other => {
                return Err(UssError::BadRequest(format!(
                    "the body must be a position object or an array of them, not {}",
                    match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Number(_) => "a number",
                        _ => "a string",
                    }
                )))
            }
        };
        if items.is_empty() {
            return Err(UssError::BadRequest("the array holds no position".into()));
        }
        if items.len() > MAX_POSITIONS_PER_REQUEST {
            return Err(UssError::BadRequest(format!(
                "{} positions in one request; at most {MAX_POSITIONS_PER_REQUEST}",
                items.len()
            )));
        }
        let now = self.now();
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let at = if many { format!("[{i}].") } else { String::new() };
                let wire: PositionWire =
                    serde_json::from_value(item).map_err(|e| UssError::BadRequest(format!("{at}{e}")))?;
                wire.to_domain(now).map_err(|e| UssError::BadRequest(format!("{at}{e}")))
            })
            .collect()
    }

    /// Takes in positions of our flight `id`: judged against its volumes, the flight's latest
    /// position and monitor state made durable, then answered; an automatic change they call
    /// for starts at once.
    pub(crate) async fn positions(
        self: &Arc<Self>,
        id: &str,
        mut positions: Vec<Position>,
    ) -> Result<PositionsOutcome, UssError> {
        let Some((state, volumes, off_nominal)) = self
            .records
            .read(|m| m.own_intents.get(id).map(|o| (o.state, o.volumes.clone(), o.off_nominal_volumes.clone())))
        else {
            return Err(UssError::NotFound(format!("no operational intent {id} is managed here")));
        };
        if !flying(state) {
            return Err(UssError::WrongState(format!(
                "operational intent {id} is {}: positions are taken only once it is Activated",
                state.as_str()
            )));
        }
        positions.sort_by_key(|p| p.time.micros());
        // Judged outside the lock: the geometry is the costly part.
        let fits: Vec<_> = positions.iter().map(|p| crate::telemetry::check(&volumes, p)).collect();
        let now = self.now();
        let cfg = self.config.monitor;
        let (record, decision, isa_missing) = {
            let mut m = self.monitor.lock();
            let flight = m.flights.entry(id.to_owned()).or_default();
            for (p, fit) in positions.iter().zip(&fits) {
                flight.record(*p, fit.clone(), now);
            }
            if self.rid_sp() && flight.isa_id.is_none() {
                // Remote ID: the ISA's id is durable (with these positions) before it is written.
                flight.isa_id = Some(self.ids.new_id());
            }
            let record = FlightRecord::of(flight);
            let isa_missing = flight.isa.is_none() && !flight.isa_syncing;
            (record, flight.decide(state, &off_nominal, now, &cfg), isa_missing)
        };
        let body = serde_json::to_string(&record).map_err(|e| UssError::Storage(e.to_string()))?;
        self.records.apply(vec![Write::Put(Table::Telemetry, id.to_owned(), body)]).await.map_err(|e| {
            UssError::Storage(format!("the positions could not be recorded durably ({e}); send them again"))
        })?;
        if decision.is_some() {
            self.kick_monitor(id);
        }
        if isa_missing {
            // Remote ID: the flight is announced from its first position on.
            self.kick_isa(id);
        }
        if self.events.receiver_count() > 0 {
            if let Some(latest) = &record.latest {
                self.feed_position(id, self.client_id(), latest.clone(), state.as_str());
            }
        }
        let outside = fits.iter().zip(&positions).rev().find_map(|(f, p)| f.as_ref().err().map(|e| e.describe(p)));
        Ok(PositionsOutcome {
            operational_intent_id: id.to_owned(),
            accepted: positions.len(),
            state: state.as_str().to_owned(),
            conforming: outside.is_none(),
            outside,
            automatic_change: decision.map(|d| format!("{}: {}", d.state.as_str(), d.reason.describe())),
            latest: record.latest,
        })
    }

    /// The latest position of our intent `id`, as `GET .../telemetry` serves it.
    pub(crate) fn latest_position(&self, id: &str) -> Option<(Position, Option<Timestamp>)> {
        let m = self.monitor.lock();
        m.flights.get(id).and_then(|f| f.latest.map(|p| (p, f.last_arrival)))
    }

    /// Starts acting on flight `id`'s decision unless a task already does.
    fn kick_monitor(self: &Arc<Self>, id: &str) {
        {
            let mut m = self.monitor.lock();
            if m.retry_at.get(id).is_some_and(|t| t.micros() > self.now().micros()) || !m.applying.insert(id.to_owned())
            {
                return;
            }
        }
        let uss = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            uss.act_on_decisions(&id).await;
            uss.monitor.lock().applying.remove(&id);
        });
    }

    /// Makes the monitor's decisions for flight `id` until none is left (each change may call
    /// for another: a Contingent after a Nonconforming), a bounded number of times.
    async fn act_on_decisions(self: &Arc<Self>, id: &str) {
        for _ in 0..8 {
            let Some((state, off_nominal)) =
                self.records.read(|m| m.own_intents.get(id).map(|o| (o.state, o.off_nominal_volumes.clone())))
            else {
                return;
            };
            let now = self.now();
            let cfg = self.config.monitor;
            let decision = self.monitor.lock().flights.get(id).and_then(|f| f.decide(state, &off_nominal, now, &cfg));
            let Some(d) = decision else { return };
            let reason = d.reason.describe();
            match self.monitor_transition(id, state, d.state, d.off_nominal).await {
                Ok(Some(outcome)) => {
                    let text = format!(
                        "conformance monitor: operation {id} {} {} (version {}): {reason}",
                        if d.state == state { "stays" } else { "is now" },
                        d.state.as_str(),
                        outcome.version.unwrap_or_default()
                    );
                    tracing::info!(%id, state = d.state.as_str(), %reason, "automatic change");
                    let record = {
                        let mut m = self.monitor.lock();
                        let Some(f) = m.flights.get_mut(id) else { return };
                        f.auto = d.state != OperationalIntentState::Activated;
                        if d.state == OperationalIntentState::Activated {
                            f.inside_since = None;
                        }
                        f.last_reason = Some(text.clone());
                        FlightRecord::of(f)
                    };
                    // Remote ID: its ISA follows its volumes (off-nominal ones included).
                    self.kick_isa(id);
                    self.feed("change", Some(id), text.clone());
                    let history = Received {
                        received_at: self.now_text(),
                        from: format!("{} (conformance monitor)", self.client_id()),
                        kind: Kind::Intent.as_str().into(),
                        entity_id: id.to_owned(),
                        version: outcome.version,
                        state: Some(d.state.as_str().to_owned()),
                        accepted: true,
                        note: reason,
                    };
                    let mut writes = vec![];
                    if let Ok(body) = serde_json::to_string(&record) {
                        writes.push(Write::Put(Table::Telemetry, id.to_owned(), body));
                    }
                    if let Ok(w) = notification_write(self.now().micros(), &history) {
                        writes.push(w);
                    }
                    if let Err(e) = self.records.apply(writes).await {
                        tracing::error!(%id, error = %e, "could not record an automatic change's reason");
                    }
                }
                // The operation changed meanwhile (the operator's change won): decide again.
                Ok(None) => continue,
                Err(UssError::Busy(_)) => self.clock.sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    // Refused for good (no conformance monitoring scope): say so once a minute.
                    let wait = if matches!(e, UssError::Forbidden(_)) { 60 } else { RETRY_AFTER_S };
                    tracing::warn!(%id, error = %e, "an automatic change failed; retrying");
                    self.feed(
                        "change",
                        Some(id),
                        format!("conformance monitor: could not make operation {id} {} yet: {e}", d.state.as_str()),
                    );
                    self.monitor.lock().retry_at.insert(id.to_owned(), self.now().plus_seconds(wait));
                    return;
                }
            }
        }
    }

    /// Records a flight's durable part (a failure is logged: the next position records it again).
    pub(crate) async fn save_flight(&self, id: &str, record: &FlightRecord) {
        let Ok(body) = serde_json::to_string(record) else { return };
        if let Err(e) = self.records.apply(vec![Write::Put(Table::Telemetry, id.to_owned(), body)]).await {
            tracing::error!(%id, error = %e, "could not record a flight's state");
        }
    }

    /// Loads the flights' durable part (at start-up): each is judged again from its latest
    /// position, its silence counted from now.
    pub async fn load_flights(&self) -> Result<(), String> {
        let rows: Vec<(String, FlightRecord)> =
            self.records.load_all(Table::Telemetry).await.map_err(|e| e.to_string())?;
        let now = self.now();
        let mut m = self.monitor.lock();
        for (id, r) in rows {
            let latest = r.latest.and_then(|w| w.to_domain(now.plus_seconds(3600)).ok());
            let isa_id = r.isa_id.or_else(|| r.isa.as_ref().map(|(id, _, _)| id.clone()));
            let isa = r.isa.and_then(|(id, version, extents)| {
                api::volume_from_wire(&extents, "isa").ok().map(|volume| crate::telemetry::FlightIsa {
                    id,
                    version,
                    volume,
                })
            });
            let flight = Flight {
                track: latest.into_iter().collect(),
                latest,
                last_arrival: latest.map(|_| now),
                outside_since: r.outside.then_some(now),
                inside_since: None,
                last_outside: None,
                auto: r.auto,
                last_reason: r.last_reason,
                isa,
                isa_id,
                isa_syncing: false,
                isa_notified: vec![],
            };
            m.flights.insert(id, flight);
        }
        Ok(())
    }

    /// Re-decides every flight (timers), forgets flights that ended, and polls others'
    /// off-nominal flights now and then. Runs for the participant's life.
    pub async fn run_monitor(self: Arc<Self>) {
        loop {
            self.clock.sleep(TICK).await;
            self.monitor_tick();
        }
    }

    pub(crate) fn monitor_tick(self: &Arc<Self>) {
        let now = self.now();
        let cfg = self.config.monitor;
        let ids: Vec<String> = self.monitor.lock().flights.keys().cloned().collect();
        let mut gone = Vec::new();
        for id in ids {
            let own = self.records.read(|m| m.own_intents.get(&id).map(|o| (o.state, o.off_nominal_volumes.clone())));
            let Some((state, off_nominal)) = own else {
                if !self.records.is_pending(&id) {
                    gone.push(id);
                }
                continue;
            };
            let due = self.monitor.lock().flights.get(&id).and_then(|f| f.decide(state, &off_nominal, now, &cfg));
            if due.is_some() {
                self.kick_monitor(&id);
            }
        }
        if !gone.is_empty() {
            let isas: Vec<(String, Option<String>)> = {
                let mut m = self.monitor.lock();
                let mut isas = Vec::new();
                for id in &gone {
                    if let Some(f) = m.flights.remove(id) {
                        let version = f.isa.as_ref().map(|i| i.version.clone());
                        isas.extend(f.isa_id.or(f.isa.map(|i| i.id)).map(|isa_id| (isa_id, version)));
                    }
                    m.retry_at.remove(id);
                }
                isas
            };
            // Remote ID: an ended flight is no longer announced.
            for (isa_id, version) in isas {
                self.drop_isa(isa_id, version);
            }
            let uss = self.clone();
            tokio::spawn(async move {
                let writes = gone.into_iter().map(|id| Write::Delete(Table::Telemetry, id)).collect();
                if let Err(e) = uss.records.apply(writes).await {
                    tracing::warn!(error = %e, "could not forget ended flights' telemetry");
                }
            });
        }
        self.poll_others_if_due(now);
    }

    /// Asks the managers of others' off-nominal intents for their telemetry, every
    /// `POLL_OTHERS_EVERY_S`, one round at a time (each call bounded by the peer timeout).
    fn poll_others_if_due(self: &Arc<Self>, now: Timestamp) {
        let targets: Vec<crate::domain::Reference> = self.records.read(|m| {
            m.others_intents
                .values()
                .filter(|k| k.state.requires_conformance_monitoring())
                .map(|k| k.reference.clone())
                .take(MAX_POLLED)
                .collect()
        });
        {
            let mut m = self.monitor.lock();
            let live: HashSet<&str> = targets.iter().map(|r| r.id.as_str()).collect();
            m.others.retain(|id, _| live.contains(id.as_str()));
            if targets.is_empty()
                || m.polling
                || m.last_poll.is_some_and(|t| now.micros() - t.micros() < POLL_OTHERS_EVERY_S * 1_000_000)
            {
                return;
            }
            m.polling = true;
            m.last_poll = Some(now);
        }
        let uss = self.clone();
        tokio::spawn(async move {
            let peers = &uss.peers;
            let asks = targets.iter().map(|r| async move { (r, peers.intent_telemetry(r).await) });
            let answers = futures_util::future::join_all(asks).await;
            let polled_at = uss.now();
            let mut fresh = Vec::new();
            {
                let mut m = uss.monitor.lock();
                for (r, got) in answers {
                    let (position, error) = match got {
                        Ok(t) if t.operational_intent_id == r.id => {
                            (t.telemetry.as_ref().and_then(Position::from_vehicle_telemetry), None)
                        }
                        Ok(t) => (None, Some(format!("answered for another intent ({})", t.operational_intent_id))),
                        Err(e) => (None, Some(e)),
                    };
                    if let Some(p) = position {
                        fresh.push((r.id.clone(), r.manager.clone(), p));
                    }
                    let previous = m.others.get(&r.id).and_then(|o| o.position);
                    m.others.insert(
                        r.id.clone(),
                        OtherTelemetry {
                            manager: r.manager.clone(),
                            position: position.or(previous),
                            polled_at,
                            error,
                        },
                    );
                }
                m.polling = false;
            }
            for (id, manager, p) in fresh {
                uss.feed_position(&id, &manager, p.to_wire(), "off-nominal");
            }
        });
    }

    /// The monitor's view of our intent `id` for the status: latest position, whether it is
    /// inside, the last automatic change.
    pub(crate) fn flight_status(&self) -> serde_json::Value {
        let m = self.monitor.lock();
        let flights: serde_json::Map<String, serde_json::Value> = m
            .flights
            .iter()
            .map(|(id, f)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "latest": f.latest.map(|p| p.to_wire()),
                        "positions_kept": f.track.len(),
                        "outside": f.outside_since.is_some(),
                        "automatic": f.auto,
                        "last_automatic_change": f.last_reason,
                        "isa": f.isa.as_ref().map(|i| serde_json::json!({"id": i.id, "version": i.version})),
                        "isa_notified": f.isa_notified,
                    }),
                )
            })
            .collect();
        serde_json::Value::Object(flights)
    }

    /// Others' off-nominal flights as last polled from their managers.
    pub(crate) fn others_flights_status(&self) -> serde_json::Value {
        let m = self.monitor.lock();
        let flights: serde_json::Map<String, serde_json::Value> = m
            .others
            .iter()
            .map(|(id, o)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "manager": o.manager,
                        "latest": o.position.map(|p| p.to_wire()),
                        "polled_at": crate::time_text(o.polled_at),
                        "error": o.error,
                    }),
                )
            })
            .collect();
        serde_json::Value::Object(flights)
    }

    /// Live flights for the map: ours with their recent trail, others' off-nominal ones at
    /// their last polled position.
    pub(crate) fn flights_on_map(&self) -> Vec<map::MapFlight> {
        /// Trail points drawn per flight.
        const TRAIL: usize = 300;
        let states: HashMap<String, String> = self.records.read(|m| {
            let own = m.own_intents.iter().map(|(id, o)| (id.clone(), o.state.as_str().to_owned()));
            let others = m.others_intents.iter().map(|(id, k)| (id.clone(), k.state.as_str().to_owned()));
            own.chain(others).collect()
        });
        let m = self.monitor.lock();
        let ours = m.flights.iter().filter_map(|(id, f)| {
            let p = f.latest?;
            let skip = f.track.len().saturating_sub(TRAIL);
            Some(map::MapFlight {
                id: id.clone(),
                manager: self.client_id().to_owned(),
                own: true,
                state: states.get(id).cloned(),
                position: [p.at.lng(), p.at.lat()],
                alt_m: p.alt_m,
                time: crate::time_text(p.time),
                trail: f.track.iter().skip(skip).map(|q| [q.at.lng(), q.at.lat()]).collect(),
            })
        });
        let others = m.others.iter().filter_map(|(id, o)| {
            let p = o.position?;
            Some(map::MapFlight {
                id: id.clone(),
                manager: o.manager.clone(),
                own: false,
                state: states.get(id).cloned(),
                position: [p.at.lng(), p.at.lat()],
                alt_m: p.alt_m,
                time: crate::time_text(p.time),
                trail: vec![],
            })
        });
        ours.chain(others).collect()
    }

    /// Whether our intent `id` may be served telemetry now: the own intent, for the peer API.
    pub(crate) fn own_intent_state(&self, id: &str) -> Option<OperationalIntentState> {
        self.records.read(|m| m.own_intents.get(id).map(|o: &OwnIntent| o.state))
    }
}
