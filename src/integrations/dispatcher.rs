//! Delivers the outbox: claims due deliveries (a batch, one per order key), sends them
//! concurrently, and records each outcome. A webhook is a signed POST that a 2xx answers; any
//! other answer, a timeout or a refused connection is a failed attempt, and the endpoint waits
//! out a backoff (doubling from `retry_base_ms` to `retry_max_ms`, 50-100 % of it at random)
//! before its next attempt; its first success makes its backlog due at once. A delivery is
//! dead-lettered after `max_attempts` attempts or `give_up_after_secs`. E-mails are retried the
//! same way, each on its own.

use std::sync::Arc;
use std::time::Duration;

use super::email::Mailer;
use super::signing::{Secret, signature_header};
use super::target::TargetPolicy;
use crate::captions::journal::unix_ms;
use crate::config::WebhooksConfig;
use crate::store::outbox::OutboxItem;
use crate::store::{Store, StoreError};

/// Longest error text kept per attempt.
const MAX_ERROR_CHARS: usize = 300;
/// Finished deliveries are pruned at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered(Option<i64>),
    /// Failed; retried unless dead-lettered.
    Failed {
        status: Option<i64>,
        error: String,
    },
    /// Can never succeed (its endpoint is gone, its payload unusable): dead at once.
    Undeliverable(String),
}

pub struct Dispatcher {
    pub id: String,
    store: Store,
    config: WebhooksConfig,
    client: reqwest::Client,
    mailer: Option<Arc<Mailer>>,
}

impl Dispatcher {
    pub fn new(store: Store, config: WebhooksConfig, mailer: Option<Arc<Mailer>>) -> Self {
        let policy = TargetPolicy::from_config(&config);
        Self {
            id: format!(
                "{}-{}-{:x}",
                crate::media_messages::worker::hostname(),
                std::process::id(),
                unix_ms() & 0xffff_ffff
            ),
            client: policy.client(Duration::from_secs(config.timeout_secs.max(1))),
            store,
            config,
            mailer,
        }
    }

    /// Delivers until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut listener = self.listen().await;
        let mut pruned = tokio::time::Instant::now() - PRUNE_EVERY;
        tracing::info!(dispatcher = %self.id, "outbox dispatcher started");
        while !*shutdown.borrow() {
            // Armed before the pass, so a delivery written during it wakes the next one.
            let woken = super::super::store::outbox::WAKE.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let claimed = match self.pass().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox unavailable; retrying");
                    0
                }
            };
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                self.prune().await;
            }
            // Something was sent: what it finished may have made the next of its order key
            // due, so look again at once; wait only when nothing was.
            if claimed > 0 {
                continue;
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = l.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.config.poll_ms.max(10))) => {}
                _ = woken => {}
                _ = notified => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(dispatcher = %self.id, "outbox dispatcher stopped");
    }

    async fn listen(&self) -> Option<sqlx::postgres::PgListener> {
        self.store
            .listener(crate::store::outbox::NOTIFY_CHANNEL)
            .await
    }

    async fn prune(&self) {
        let keep = i64::from(self.config.keep_days.max(1)) * 86_400_000;
        match self.store.prune_outbox(unix_ms() as i64 - keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "finished deliveries pruned from the outbox"),
            Err(e) => tracing::warn!(error = %e, "outbox not pruned"),
        }
    }

    /// Claims a batch and delivers it: the number claimed.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let lease_ms = self.config.lease_secs as i64 * 1000;
        let started = std::time::Instant::now();
        let items = self
            .store
            .claim_outbox(
                &self.id,
                unix_ms() as i64,
                lease_ms,
                self.config.batch,
                self.mailer.is_some(),
            )
            .await?;
        let n = items.len();
        let claim_ms = started.elapsed().as_millis();
        let mut running = tokio::task::JoinSet::new();
        for item in items {
            let this = self.clone_parts();
            running.spawn(async move {
                let outcome = this.deliver(&item).await;
                this.record(&item, outcome).await
            });
        }
        while let Some(done) = running.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "a delivery's outcome was not recorded; its lease will expire and it is sent again");
            }
        }
        if n > 0 {
            tracing::debug!(
                claimed = n,
                claim_ms,
                total_ms = started.elapsed().as_millis(),
                "outbox pass"
            );
        }
        Ok(n)
    }

    fn clone_parts(&self) -> Arc<Parts> {
        Arc::new(Parts {
            id: self.id.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            mailer: self.mailer.clone(),
        })
    }
}

/// What one delivery task needs.
struct Parts {
    id: String,
    store: Store,
    config: WebhooksConfig,
    client: reqwest::Client,
    mailer: Option<Arc<Mailer>>,
}

impl Parts {
    async fn deliver(&self, item: &OutboxItem) -> Outcome {
        match item.channel.as_str() {
            "webhook" => self.post(item).await,
            // Claimed only by a dispatcher with a mailer.
            "email" => match &self.mailer {
                Some(mailer) => mailer.deliver(&self.store, item).await,
                None => Outcome::Failed {
                    status: None,
                    error: "e-mail is not configured in this process".into(),
                },
            },
            other => Outcome::Undeliverable(format!("unknown channel {other:?}")),
        }
    }

    async fn post(&self, item: &OutboxItem) -> Outcome {
        let endpoint = match self.store.webhook_endpoint(&item.target).await {
            Ok(Some(e)) => e,
            Ok(None) => return Outcome::Undeliverable("endpoint deleted".into()),
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: e.to_string(),
                };
            }
        };
        if !endpoint.enabled {
            return Outcome::Undeliverable("endpoint disabled".into());
        }
        let now_ms = unix_ms() as i64;
        let secrets: Vec<Secret> = endpoint
            .signing_secrets(now_ms)
            .into_iter()
            .filter_map(|s| Secret::parse(s).ok())
            .collect();
        if secrets.is_empty() {
            return Outcome::Undeliverable("the endpoint has no valid secret".into());
        }
        let timestamp = now_ms / 1000;
        let signature =
            signature_header(&secrets, &item.event_id, timestamp, item.payload.as_bytes());
        let sent = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &item.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(item.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(Some(i64::from(response.status().as_u16())))
            }
            Ok(response) => Outcome::Failed {
                status: Some(i64::from(response.status().as_u16())),
                error: format!("the receiver answered {}", response.status()),
            },
            Err(e) => Outcome::Failed {
                status: None,
                error: describe(&e),
            },
        }
    }

    async fn record(&self, item: &OutboxItem, outcome: Outcome) -> Result<(), StoreError> {
        let now = unix_ms() as i64;
        let webhook = item.channel == "webhook";
        match outcome {
            Outcome::Delivered(status) => {
                if self
                    .store
                    .delivered(item.seq, &self.id, status, now)
                    .await?
                {
                    DELIVERED.inc();
                    LATENCY.observe((now - item.created_at_ms).max(0) as f64 / 1000.0);
                }
                if webhook {
                    self.store
                        .webhook_endpoint_recovered(&item.target, now)
                        .await?;
                }
            }
            Outcome::Failed { status, error } => {
                FAILED.inc();
                let failures = if webhook {
                    self.store.webhook_endpoint_failed(&item.target).await?
                } else {
                    item.attempt
                };
                let retry_at = now + backoff_ms(&self.config, failures, jitter());
                let gives_up = (self.config.max_attempts > 0
                    && item.attempt >= self.config.max_attempts)
                    || now - item.created_at_ms >= self.config.give_up_after_secs as i64 * 1000;
                if webhook {
                    self.store
                        .hold_webhook_endpoint(&item.target, retry_at)
                        .await?;
                }
                let error = truncate(&error);
                tracing::info!(delivery = %item.id, attempt = item.attempt, %error, dead = gives_up, "delivery failed");
                let retry = (!gives_up).then_some(retry_at);
                if self
                    .store
                    .delivery_failed(item.seq, &self.id, status, &error, retry, now)
                    .await?
                    && gives_up
                {
                    DEAD.inc();
                    tracing::warn!(delivery = %item.id, target = %item.target, "delivery dead-lettered");
                }
            }
            Outcome::Undeliverable(error) => {
                if self
                    .store
                    .delivery_failed(item.seq, &self.id, None, &truncate(&error), None, now)
                    .await?
                {
                    DEAD.inc();
                    tracing::warn!(delivery = %item.id, %error, "delivery dead-lettered");
                }
            }
        }
        Ok(())
    }
}

/// The wait after the `failures`-th failure in a row: doubling from `retry_base_ms`, at most
/// `retry_max_ms`, scaled by `jitter` in [0.5, 1].
pub fn backoff_ms(config: &WebhooksConfig, failures: i64, jitter: f64) -> i64 {
    let doublings = (failures.max(1) - 1).min(30) as u32;
    let full = config
        .retry_base_ms
        .saturating_mul(1u64 << doublings)
        .min(config.retry_max_ms);
    (full as f64 * jitter.clamp(0.5, 1.0)).round() as i64
}

fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0
}

/// A transport error in words, its causes included (reqwest's top line alone says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "the receiver did not answer in time".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

static DELIVERED: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_outbox_delivered_total",
        "Webhooks and e-mails delivered",
    )
});
static FAILED: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_outbox_failed_attempts_total",
        "Delivery attempts that failed (each is retried unless dead-lettered)",
    )
});
static DEAD: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_outbox_dead_lettered_total",
        "Deliveries given up on (visible in the delivery log)",
    )
});
static LATENCY: std::sync::LazyLock<prometheus::Histogram> = std::sync::LazyLock::new(|| {
    crate::metrics::histogram(
        "meeting_agent_outbox_delivery_seconds",
        "From an event written to its delivery",
        &[0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0],
    )
});

pub(super) fn register_metrics() {
    std::sync::LazyLock::force(&DELIVERED);
    std::sync::LazyLock::force(&FAILED);
    std::sync::LazyLock::force(&DEAD);
    std::sync::LazyLock::force(&LATENCY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let c = WebhooksConfig::default();
        let full: Vec<i64> = (1..=6).map(|f| backoff_ms(&c, f, 1.0)).collect();
        assert_eq!(full, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff_ms(&c, 3, 0.5), 1000);
        assert_eq!(backoff_ms(&c, 1_000_000, 1.0), 5000);
        assert_eq!(backoff_ms(&c, 0, 0.0), 250);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j), "{j}");
        }
    }
}
