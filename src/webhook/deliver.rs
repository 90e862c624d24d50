//! Delivery to one endpoint: a bounded queue, split into lanes by the event's key. A lane
//! posts its events one after the other and retries the one at its head (exponential
//! backoff with jitter, for the retry window) before the next, so the events of a key reach
//! the endpoint in order; the other lanes go on meanwhile.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{StatusCode, Uri};
use tokio::sync::mpsc;

use super::event::Event;
use super::post::{self, Client};
use crate::config::WebhookSettings;
use crate::metrics::WebhookEndpointMetrics;
use crate::time;

/// Lanes per endpoint: events in flight at once to one endpoint.
const LANES: usize = 16;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the writer is asked to do.
pub(super) enum Cmd {
    /// Add an event to every endpoint's stream, then queue it for delivery.
    Add(Arc<Event>),
    /// An entry of `endpoint`'s stream is done with (delivered or given up).
    Done { endpoint: usize, entry: String },
}

/// One `--webhook-url`.
pub(super) struct Endpoint {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    shared: Arc<Shared>,
}

/// One event to post to one endpoint.
pub(super) struct Job {
    pub id: Arc<str>,
    /// The order key: the lane.
    pub key: Arc<str>,
    pub payload: Payload,
    /// Emitted at (ms since the epoch), for the latency to 2xx.
    pub at_millis: u64,
    /// Its entry in the durable outbox, deleted once done with.
    pub entry: Option<String>,
}

pub(super) enum Payload {
    /// Rendered by the lane, off the owner's path.
    Event(Arc<Event>),
    /// Rendered already (written to, or adopted from, the outbox).
    Rendered(Bytes),
}

impl Job {
    pub(super) fn new(event: &Arc<Event>) -> Self {
        Job {
            id: event.id.as_str().into(),
            key: event.key.as_str().into(),
            payload: Payload::Event(event.clone()),
            at_millis: event.at_millis,
            entry: None,
        }
    }
}

/// What an endpoint's lanes share.
struct Shared {
    index: usize,
    uri: Uri,
    node: Arc<str>,
    client: Client,
    key: Option<Vec<u8>>,
    timeout: Duration,
    retry_window: Duration,
    limit: usize,
    /// The durable outbox's writer: told of entries done with.
    outbox: Option<mpsc::UnboundedSender<Cmd>>,
    /// Events queued or in flight: bounded by `limit`.
    queued: AtomicUsize,
    metrics: WebhookEndpointMetrics,
}

impl Endpoint {
    pub(super) fn start(
        index: usize,
        uri: Uri,
        settings: &WebhookSettings,
        node: Arc<str>,
        client: Client,
        outbox: Option<mpsc::UnboundedSender<Cmd>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            index,
            uri,
            node,
            client,
            key: settings.secret.clone(),
            timeout: settings.timeout,
            retry_window: settings.retry_window,
            limit: settings.queue_limit,
            outbox,
            queued: AtomicUsize::new(0),
            metrics: WebhookEndpointMetrics::new(index),
        });
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_lane(rx, shared.clone()));
                tx
            })
            .collect();
        Endpoint { lanes, shared }
    }

    /// Queues `job` to its key's lane, or drops it (counted, logged) when the endpoint's
    /// queue is full. Never waits.
    pub(super) fn push(&self, job: Job) {
        let shared = &self.shared;
        let before = shared.queued.fetch_add(1, Ordering::Relaxed);
        if before >= shared.limit {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.forget(job.entry);
            return self.overflowed();
        }
        shared.metrics.queue.increment(1.0);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        job.key.hash(&mut hasher);
        let lane = hasher.finish() as usize % self.lanes.len();
        if self.lanes[lane].send(job).is_err() {
            // The runtime is going away: the outbox keeps the entry for an adopter.
            shared.done();
        }
    }

    pub(super) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// An event for this endpoint was dropped: its queue (or the outbox's) is full.
    pub(super) fn overflowed(&self) {
        let shared = &self.shared;
        shared.metrics.overflow.increment(1);
        // Once per thousand, not once per event of a flood.
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        if DROPPED.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
            tracing::warn!(endpoint = %shared.uri, limit = shared.limit, "webhook queue full: event dropped");
        }
    }

    /// The endpoint's queue limit.
    pub(super) fn limit(&self) -> usize {
        self.shared.limit
    }
}

impl Shared {
    fn done(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.metrics.queue.decrement(1.0);
    }

    /// Deletes a finished event's outbox entry.
    fn forget(&self, entry: Option<String>) {
        if let (Some(outbox), Some(entry)) = (&self.outbox, entry) {
            let _ = outbox.send(Cmd::Done { endpoint: self.index, entry });
        }
    }
}

async fn run_lane(mut jobs: mpsc::UnboundedReceiver<Job>, shared: Arc<Shared>) {
    while let Some(job) = jobs.recv().await {
        deliver(&shared, &job).await;
        shared.forget(job.entry);
        shared.done();
    }
}

/// What an attempt's answer means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Delivered,
    /// A 4xx other than 408 and 429: the receiver does not want it; not retried.
    Rejected,
    Retry,
}

pub(super) fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
    {
        Verdict::Rejected
    } else {
        Verdict::Retry
    }
}

/// Posts `event` until it is answered 2xx, rejected, or the retry window ran out.
async fn deliver(shared: &Shared, event: &Job) {
    let body = match &event.payload {
        Payload::Event(event) => Bytes::from(event.body(&shared.node)),
        Payload::Rendered(body) => body.clone(),
    };
    let started = tokio::time::Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let outcome =
            post::post(&shared.client, &shared.uri, shared.key.as_deref(), &event.id, body.clone(), shared.timeout)
                .await;
        let failure = match outcome {
            Ok((status, _)) => match verdict(status) {
                Verdict::Delivered => {
                    shared.metrics.delivered.increment(1);
                    let waited = time::now_millis().saturating_sub(event.at_millis);
                    shared.metrics.seconds.record(waited as f64 / 1000.0);
                    return;
                }
                Verdict::Rejected => {
                    shared.metrics.rejected.increment(1);
                    tracing::warn!(endpoint = shared.index, id = %event.id, %status, "webhook rejected by the receiver: not retried");
                    return;
                }
                Verdict::Retry => format!("answered {status}"),
            },
            Err(err) => err.to_string(),
        };
        let delay = backoff(attempt);
        if started.elapsed() + delay > shared.retry_window {
            shared.metrics.expired.increment(1);
            tracing::warn!(endpoint = shared.index, id = %event.id, error = %failure, "webhook given up: retry window over");
            return;
        }
        if attempt == 0 {
            tracing::info!(endpoint = shared.index, id = %event.id, error = %failure, "webhook failed: retrying");
        }
        shared.metrics.retried.increment(1);
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

/// The delay before retry `attempt` (from 0): doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], of which a random half to whole is taken (jitter).
pub(super) fn backoff(attempt: u32) -> Duration {
    let full = FIRST_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter())
}

/// A number in [0, 1), from a per-thread xorshift seeded by the clock.
fn jitter() -> f64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1,
        );
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_verdicts() {
        assert_eq!(verdict(StatusCode::NO_CONTENT), Verdict::Delivered);
        assert_eq!(verdict(StatusCode::GONE), Verdict::Rejected);
        assert_eq!(verdict(StatusCode::REQUEST_TIMEOUT), Verdict::Retry);
        assert_eq!(verdict(StatusCode::TOO_MANY_REQUESTS), Verdict::Retry);
        assert_eq!(verdict(StatusCode::BAD_GATEWAY), Verdict::Retry);
    }

    #[test]
    fn test_backoff_doubles_to_its_cap_with_jitter() {
        for attempt in 0..40 {
            let full = FIRST_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            let delay = backoff(attempt);
            assert!(delay <= full && delay >= full / 2, "{attempt}: {delay:?}");
        }
    }
}
