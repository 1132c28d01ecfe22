//! Notifications of our changes to the subscribers the DSS named, for intents and constraints
//! alike: sent after the change is answered (no subscriber, hung or slow, delays it), the first
//! attempt to every subscriber in parallel, failures retried with exponential backoff for
//! `notify_retry_for` while the change is still the entity's latest, every outcome recorded on
//! the entity (the operator's status) and on the map's feed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::domain::Subscriber;
use crate::entities::{notification_body, Delivery};
use crate::ports::Attempt;
use crate::records::Held;
use crate::Uss;

/// The first wait before a failed delivery is tried again; it doubles after each attempt.
pub(crate) const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The entity a notification is about, at the version it announced (`None`: its removal).
#[derive(Debug, Clone)]
struct Subject {
    id: String,
    version: Option<i32>,
}

impl Delivery {
    /// A delivery's record after one attempt.
    pub(crate) fn after(base_url: &str, attempt: &Attempt, attempts: u32) -> Delivery {
        let (status, acknowledged, detail) = match attempt {
            Attempt::Acknowledged(status) => (*status, true, String::new()),
            Attempt::Answered(status) => (*status, false, format!("answered HTTP {status}")),
            Attempt::Unreachable(why) => (0, false, why.clone()),
            Attempt::TimedOut(after) => (0, false, format!("no answer within {} s", after.as_secs())),
            Attempt::NotSent(why) => (0, false, format!("not sent: {why}")),
        };
        Delivery {
            uss_base_url: base_url.to_owned(),
            status,
            acknowledged,
            detail,
            attempts,
            retrying: false,
            sending: false,
        }
    }
}

impl Uss {
    /// The subscribers to notify (never ourselves), as deliveries just started: recorded with
    /// the change itself, before it is answered.
    pub(crate) fn starting_deliveries(&self, subscribers: &[Subscriber]) -> Vec<Delivery> {
        subscribers.iter().filter(|s| !self.is_us(&s.base_url)).map(|s| Delivery::sending(&s.base_url)).collect()
    }

    fn is_us(&self, base_url: &str) -> bool {
        base_url.trim_end_matches('/') == self.config.base_url
    }

    /// Tells `subscribers` of our entity's new state, after the caller has its answer.
    pub(crate) fn notify_change<E: Held>(self: &Arc<Self>, own: &E, subscribers: &[Subscriber]) {
        let id = &own.reference().id;
        let details = own.details_json();
        let targets = subscribers
            .iter()
            .map(|s| {
                (s.base_url.clone(), notification_body(E::KIND, id, Some(details.clone()), s.subscriptions_wire()))
            })
            .collect();
        let subject = Subject { id: id.clone(), version: Some(own.reference().version) };
        self.deliver::<E>(subject, targets);
    }

    /// Tells `subscribers` our entity `id` is gone; returns the deliveries as started.
    pub(crate) fn notify_removal<E: Held>(self: &Arc<Self>, id: &str, subscribers: &[Subscriber]) -> Vec<Delivery> {
        let targets = subscribers
            .iter()
            .map(|s| (s.base_url.clone(), notification_body(E::KIND, id, None, s.subscriptions_wire())))
            .collect();
        self.deliver::<E>(Subject { id: id.to_owned(), version: None }, targets);
        self.starting_deliveries(subscribers)
    }

    /// Sends each body to its subscriber (never to ourselves) in the background: the change is
    /// durable and accepted by the DSS, and no subscriber, hung or slow, delays its answer or
    /// the next plan.
    fn deliver<E: Held>(self: &Arc<Self>, subject: Subject, targets: Vec<(String, serde_json::Value)>) {
        let targets: Vec<_> = targets.into_iter().filter(|(base, _)| !self.is_us(base)).collect();
        if targets.is_empty() {
            return;
        }
        let uss = self.clone();
        tokio::spawn(async move { uss.deliver_now::<E>(subject, targets).await });
    }

    /// The first attempt at every delivery, in parallel (each bounded by the peer timeout);
    /// failures are retried in the background.
    async fn deliver_now<E: Held>(self: Arc<Self>, subject: Subject, targets: Vec<(String, serde_json::Value)>) {
        let path = E::KIND.uss_path();
        let first = join_all(targets.iter().map(|(base, body)| self.peers.notify(base, path, body))).await;
        let mut deliveries = Vec::new();
        for ((base, body), attempt) in targets.into_iter().zip(first) {
            let mut d = Delivery::after(&base, &attempt, 1);
            if attempt.retryable() && !self.config.notify_retry_for.is_zero() {
                d.retrying = true;
                let uss = self.clone();
                let subject = subject.clone();
                tokio::spawn(async move { uss.retry::<E>(subject, base, body).await });
            }
            self.feed_delivery(&subject, &d);
            deliveries.push(d);
        }
        self.set_deliveries::<E>(&subject, |_| deliveries).await;
    }

    /// Tries one delivery again with exponential backoff until it is acknowledged, refused for
    /// good, superseded by a newer change, or out of time.
    async fn retry<E: Held>(self: Arc<Self>, subject: Subject, base: String, body: serde_json::Value) {
        let path = E::KIND.uss_path();
        let deadline = self.now().micros() + self.config.notify_retry_for.as_micros() as i64;
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempts = 1;
        loop {
            self.clock.sleep(delay).await;
            if !self.still_current::<E>(&subject) {
                return; // superseded by a newer change, whose own notifications went out
            }
            attempts += 1;
            metrics::counter!("uss_notification_retries_total").increment(1);
            let attempt = self.peers.notify(&base, path, &body).await;
            let mut d = Delivery::after(&base, &attempt, attempts);
            let out_of_time = self.now().micros() + 2 * delay.as_micros() as i64 > deadline;
            let give_up = d.acknowledged || !attempt.retryable() || out_of_time;
            d.retrying = !give_up;
            self.feed_delivery(&subject, &d);
            let recorded = d.clone();
            self.set_deliveries::<E>(&subject, move |list| {
                let mut list = list.to_vec();
                match list.iter_mut().find(|x| x.uss_base_url == recorded.uss_base_url) {
                    Some(x) => *x = recorded,
                    None => list.push(recorded),
                }
                list
            })
            .await;
            if give_up {
                if !d.acknowledged {
                    tracing::warn!(%base, detail = %d.detail, attempts, "notification not delivered; gave up");
                }
                return;
            }
            delay *= 2;
        }
    }

    /// One delivery outcome on the map's live feed.
    fn feed_delivery(&self, subject: &Subject, d: &Delivery) {
        let id = &subject.id;
        let counted = match (d.acknowledged, d.retrying) {
            (true, _) => "acknowledged",
            (false, true) => "retrying",
            (false, false) => "failed",
        };
        metrics::counter!("uss_notification_deliveries_total", "outcome" => counted).increment(1);
        let outcome = if d.acknowledged {
            "acknowledged".to_owned()
        } else if d.retrying {
            format!("FAILED, retrying ({})", d.detail)
        } else {
            format!("FAILED ({})", d.detail)
        };
        let attempt = if d.attempts > 1 { format!(" (attempt {})", d.attempts) } else { String::new() };
        self.feed("delivery", Some(id), format!("notification of {id} to {}{attempt}: {outcome}", d.uss_base_url));
    }

    fn still_current<E: Held>(&self, subject: &Subject) -> bool {
        match subject.version {
            Some(version) => self.records.is_current::<E>(&subject.id, version),
            // A removal stays current while nothing of that id is ours again.
            None => self.records.own::<E>(&subject.id).is_none(),
        }
    }

    /// Records deliveries on the entity (a failure here loses only the record of a delivery,
    /// so it is logged). Deliveries of a removal have no entity to be recorded on.
    async fn set_deliveries<E: Held>(&self, subject: &Subject, update: impl FnOnce(&[Delivery]) -> Vec<Delivery>) {
        let Some(version) = subject.version else { return };
        if let Err(e) = self.records.set_deliveries::<E>(&subject.id, version, update).await {
            tracing::warn!(error = %e, id = %subject.id, "could not record notification deliveries");
        }
    }
}
