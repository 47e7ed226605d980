//! What the agent tells systems outside the meeting: signed webhooks for the events an
//! integrator needs, and the meeting's follow-up by e-mail. Both go through the store's outbox
//! (`store::outbox`): an event is written there first, one row per endpoint that wants it, and
//! dispatchers (any number, in any process) deliver it at least once, in order per meeting.

pub mod dispatcher;
pub mod email;
pub mod events;
pub mod signing;
pub mod target;

use crate::config::WebhooksConfig;
use crate::store::outbox::NewDelivery;
use crate::store::{Store, StoreError};
pub use events::Event;

/// Writes events into the outbox: what every part that notices something holds.
#[derive(Clone, Debug)]
pub struct Events {
    store: Store,
    max_pending: i64,
}

impl Events {
    pub fn new(store: Store, config: &WebhooksConfig) -> Self {
        Self {
            store,
            max_pending: config.max_pending_per_target,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One row per enabled endpoint that wants `event`; an endpoint whose backlog is full gets
    /// the row dead-lettered (`outbox full`), so the loss is visible in its log. The rows
    /// written (0 for an event already written).
    pub async fn emit(&self, event: &Event, now_ms: i64) -> Result<u64, StoreError> {
        let endpoints = self.store.webhook_endpoints().await?;
        let mut rows = Vec::new();
        for endpoint in endpoints.iter().filter(|e| e.wants(event)) {
            let full = self.store.outbox_unfinished(&endpoint.id).await? >= self.max_pending;
            let key = event.room.as_deref().unwrap_or(&event.id);
            rows.push((
                NewDelivery {
                    id: format!("{}.{}", event.id, endpoint.id),
                    event_id: event.id.clone(),
                    channel: "webhook",
                    target: endpoint.id.clone(),
                    event_type: event.event_type.to_string(),
                    room: event.room.clone(),
                    order_key: format!("{}/{key}", endpoint.id),
                    payload: event.body(),
                    not_before_ms: now_ms,
                },
                full.then_some("outbox full"),
            ));
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let written = self.store.add_to_outbox(&rows, now_ms).await?;
        EVENTS.with_label_values(&[event.event_type]).inc();
        Ok(written)
    }

    /// [`Self::emit`] without waiting: a store that is away loses the event, and says so.
    pub fn emit_in_background(&self, event: Event) {
        let events = self.clone();
        tokio::spawn(async move {
            let now = crate::captions::journal::unix_ms() as i64;
            if let Err(e) = events.emit(&event, now).await {
                tracing::warn!(error = %e, event = event.event_type, id = %event.id, "webhook event not written");
            }
        });
    }
}

static EVENTS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    crate::metrics::counter_vec(
        "meeting_agent_webhook_events_total",
        "Events written to the outbox for at least one endpoint, by type",
        &["type"],
    )
});

/// Registers the outbox's metrics, so `/metrics` lists them before the first event.
pub fn register_metrics() {
    std::sync::LazyLock::force(&EVENTS);
    dispatcher::register_metrics();
}
