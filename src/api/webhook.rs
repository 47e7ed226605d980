//! LiveKit's webhook (`POST /v1/livekit/webhook`): the signature's token is checked before the
//! body is read, the body's SHA-256 must be in it, each event is handled once (its id kept for a
//! day, in the store when there is one, else in a bounded set in memory), events older than
//! that are ignored, and `room_finished` closes the meetings of that room instance (its sid),
//! not every open meeting that ever had the room's name.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::openapi::schema;
use super::{ApiError, ApiState, err};
use crate::captions::journal::unix_ms;

/// How long an event id is remembered, and the oldest event handled.
pub const SEEN_FOR: Duration = Duration::from_secs(86_400);
/// Event ids kept in memory (without a store); the oldest go first.
pub const SEEN_CAPACITY: usize = 10_000;

/// A LiveKit webhook's event, once its body's SHA-256 is found in a JWT signed with the API
/// secret (`token`, the Authorization header without `Bearer `).
pub fn verify_webhook(
    api_key: &str,
    api_secret: &str,
    body: &[u8],
    token: &str,
) -> Result<livekit_protocol::WebhookEvent, ApiError> {
    let body = std::str::from_utf8(body)
        .map_err(|_| err(StatusCode::BAD_REQUEST, "webhook body is not UTF-8"))?;
    let receiver = livekit_api::webhooks::WebhookReceiver::new(
        livekit_api::access_token::TokenVerifier::with_api_key(api_key, api_secret),
    );
    receiver.receive(body, token).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused");
        err(
            StatusCode::UNAUTHORIZED,
            "webhook signature does not verify",
        )
    })
}

/// Event ids seen in the last [`SEEN_FOR`], at most [`SEEN_CAPACITY`] of them.
#[derive(Default)]
pub struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl SeenEvents {
    /// Whether `id` is new (and now remembered).
    pub fn first_time(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < SEEN_FOR && self.order.len() < SEEN_CAPACITY {
                break;
            }
            let (_, old) = self.order.pop_front().expect("a front entry");
            self.ids.remove(&old);
        }
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back((now, id.to_string()));
        true
    }

    /// Forgets `id` (its handling failed, so LiveKit's retry must be handled).
    pub fn forget(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|(_, i)| i != id);
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

async fn first_time(state: &ApiState, id: &str, now_ms: i64) -> Result<bool, ApiError> {
    match &state.store {
        Some(store) => Ok(store
            .webhook_event_first_seen(id, now_ms, SEEN_FOR.as_millis() as i64)
            .await?),
        None => Ok(state
            .webhooks_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_time(id, Instant::now())),
    }
}

async fn forget(state: &ApiState, id: &str) {
    match &state.store {
        Some(store) => {
            if let Err(e) = store.forget_webhook_event(id).await {
                tracing::warn!(error = %e, "cannot forget a webhook event whose handling failed");
            }
        }
        None => state
            .webhooks_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(id),
    }
}

#[utoipa::path(
    post,
    path = "/v1/livekit/webhook",
    operation_id = "livekit_webhook",
    tag = "operations",
    summary = "LiveKit's webhook (signed by LiveKit, not an API key)",
    request_body(content((Object = "application/webhook+json"))),
    security(("livekit_webhook" = [])),
    responses(
        (
            status = 200,
            description = "Handled, or ignored as stale or a duplicate",
            body = schema::WebhookResult
        ),
        (status = 400, description = "The body is not UTF-8", body = schema::ErrorBody),
        (status = 401, description = "The signature does not verify", body = schema::ErrorBody),
        (status = 413, description = "The body is too large", body = schema::ErrorBody),
        (status = 503, description = "The store is unavailable", body = schema::ErrorBody),
    )
)]
pub(super) async fn webhook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "webhook without a signature"))?;
    // The token alone first: nobody without the API secret gets the body read.
    livekit_api::access_token::TokenVerifier::with_api_key(
        &state.livekit_api_key,
        &state.livekit_api_secret,
    )
    .verify(&token)
    .map_err(|e| {
        tracing::warn!(error = %e, "webhook refused");
        err(
            StatusCode::UNAUTHORIZED,
            "webhook signature does not verify",
        )
    })?;
    let body = axum::body::to_bytes(body, state.limits.max_body_bytes)
        .await
        .map_err(|_| err(StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large"))?;
    let event = verify_webhook(
        &state.livekit_api_key,
        &state.livekit_api_secret,
        &body,
        &token,
    )?;
    let room = event.room.as_ref();
    let room_name = room.map(|r| r.name.clone()).unwrap_or_default();
    let room_sid = room.map(|r| r.sid.clone()).filter(|s| !s.is_empty());
    let now_ms = unix_ms() as i64;
    // Older than the ids are kept: a replay that dedup could no longer catch.
    let created_ms = event.created_at.saturating_mul(1000);
    if event.created_at > 0 && created_ms < now_ms - SEEN_FOR.as_millis() as i64 {
        tracing::warn!(event = %event.event, id = %event.id, "stale webhook event ignored");
        return Ok(Json(json!({"handled": false, "reason": "stale"})).into_response());
    }
    let id = if event.id.is_empty() {
        // No id: the body itself (signed, so only LiveKit can make a new one).
        Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    } else {
        event.id.clone()
    };
    if !first_time(&state, &id, now_ms).await? {
        tracing::info!(event = %event.event, %id, "duplicate webhook event ignored");
        return Ok(Json(json!({"handled": false, "reason": "duplicate"})).into_response());
    }
    tracing::info!(event = %event.event, room = %room_name, "webhook");
    if event.event == "room_finished"
        && let Some(store) = &state.store
    {
        // Meetings without a known sid (older rows) are closed when they started before the
        // event, so a later meeting of the same name survives.
        let before_ms = if event.created_at > 0 {
            created_ms
        } else {
            now_ms
        };
        match store
            .end_room_meetings(&room_name, room_sid.as_deref(), before_ms, now_ms)
            .await
        {
            Ok(closed) => {
                tracing::info!(room = %room_name, sid = ?room_sid, closed, "meetings finalised by room_finished")
            }
            Err(e) => {
                forget(&state, &id).await;
                return Err(e.into());
            }
        }
    }
    Ok(Json(json!({"handled": true})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_events_are_deduplicated_bounded_and_expire() {
        let mut seen = SeenEvents::default();
        let t0 = Instant::now();
        assert!(seen.first_time("EV_1", t0));
        assert!(!seen.first_time("EV_1", t0), "a replay is refused");
        seen.forget("EV_1");
        assert!(seen.first_time("EV_1", t0), "forgotten after a failure");
        // Bounded: the oldest go first.
        for i in 0..SEEN_CAPACITY + 10 {
            seen.first_time(&format!("x{i}"), t0);
        }
        assert!(seen.len() <= SEEN_CAPACITY);
        assert!(seen.first_time("EV_1", t0), "the oldest was dropped");
        // Expired after a day.
        let mut seen = SeenEvents::default();
        assert!(seen.first_time("EV_2", t0));
        assert!(seen.first_time("EV_3", t0 + SEEN_FOR + Duration::from_secs(1)));
        assert_eq!(seen.len(), 1);
    }
}
