//! `/v1/webhooks`: outgoing webhook endpoints (create, list, change, delete, rotate the
//! secret), each endpoint's delivery log, sending a delivery again, and the follow-up e-mail's
//! unsubscribe link. An endpoint for every room needs a key for every room; a key for some
//! rooms manages endpoints limited to those rooms (and sees only those).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, store};
use crate::captions::journal::unix_ms;
use crate::integrations::events::EVENT_TYPES;
use crate::integrations::signing::Secret;
use crate::integrations::target::TargetPolicy;
use crate::store::outbox::{DeliveryStatus, EndpointSettings, StoredSecret, WebhookEndpoint};

const MAX_EVENT_TYPES: usize = 32;
const MAX_ROOMS: usize = 100;
const MAX_ROOM_CHARS: usize = 256;
const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long a rotated-out secret still signs, unless the call says otherwise.
const DEFAULT_OVERLAP_SECS: u64 = 86_400;
const MAX_OVERLAP_SECS: u64 = 7 * 86_400;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointRequest {
    /// `https://...` (plain `http://` and private addresses only where the configuration
    /// allows them).
    url: String,
    #[serde(default)]
    description: String,
    /// Event types to receive (empty or absent: all).
    #[serde(default)]
    event_types: Vec<String>,
    /// Rooms whose events to receive (empty or absent: all; a key for some rooms must name
    /// them).
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Checks a request and makes it an endpoint's settings.
async fn settings(
    state: &ApiState,
    who: &Caller,
    req: EndpointRequest,
) -> Result<EndpointSettings, ApiError> {
    let bad = |m: String| err(StatusCode::BAD_REQUEST, m);
    let policy = TargetPolicy::from_config(&state.config.webhooks);
    let url = policy.check_url(&req.url).map_err(|e| bad(e.to_string()))?;
    policy
        .check_resolved(&url)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if req.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(bad(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if req.event_types.len() > MAX_EVENT_TYPES {
        return Err(bad(format!("event_types: at most {MAX_EVENT_TYPES}")));
    }
    if let Some(unknown) = req
        .event_types
        .iter()
        .find(|t| !EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(bad(format!(
            "unknown event type {unknown:?}; known: {}",
            EVENT_TYPES.join(", ")
        )));
    }
    if req.rooms.len() > MAX_ROOMS
        || req
            .rooms
            .iter()
            .any(|r| r.is_empty() || r.len() > MAX_ROOM_CHARS)
    {
        return Err(bad(format!(
            "rooms: at most {MAX_ROOMS} names of 1 to {MAX_ROOM_CHARS} bytes"
        )));
    }
    may_manage(who, &req.rooms)?;
    Ok(EndpointSettings {
        url: url.to_string(),
        description: req.description,
        event_types: req.event_types,
        rooms: req.rooms,
        enabled: req.enabled,
    })
}

/// Whether `who` may manage an endpoint for `rooms` (empty: every room).
fn may_manage(who: &Caller, rooms: &[String]) -> Result<(), ApiError> {
    let allowed = if rooms.is_empty() {
        who.all_rooms()
    } else {
        rooms.iter().all(|r| who.may_use(r))
    };
    if allowed {
        Ok(())
    } else {
        Err(err(
            StatusCode::FORBIDDEN,
            "this key may not receive events of every room it names (an endpoint for all rooms needs rooms = [\"*\"])",
        ))
    }
}

/// The endpoint, if it exists and `who` may see it (404 otherwise: others' endpoints are not
/// revealed).
async fn visible(state: &ApiState, who: &Caller, id: &str) -> Result<WebhookEndpoint, ApiError> {
    let not_found = || err(StatusCode::NOT_FOUND, "no such webhook endpoint");
    if id.len() > 64 {
        return Err(not_found());
    }
    let endpoint = store(state)?
        .webhook_endpoint(id)
        .await?
        .ok_or_else(not_found)?;
    may_manage(who, &endpoint.rooms).map_err(|_| not_found())?;
    Ok(endpoint)
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|_| err(StatusCode::SERVICE_UNAVAILABLE, "no randomness for an id"))?;
    Ok(format!(
        "ep_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn new_secret() -> Result<Secret, ApiError> {
    Secret::generate().map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    summary = "Add an endpoint; its signing secret is in this answer only",
    request_body = EndpointRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The endpoint and its `secret` (`whsec_...`)", body = schema::WebhookCreated),
        (status = 400, description = "A refused URL, an unknown event type, too many rooms", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use a room the endpoint would receive", body = schema::ErrorBody),
        (status = 409, description = "There are `webhooks.max_endpoints` endpoints already", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Json(req): Json<EndpointRequest>,
) -> Result<Response, ApiError> {
    let settings = settings(&state, &who, req).await?;
    let store = store(&state)?;
    if store.webhook_endpoints().await?.len() >= state.config.webhooks.max_endpoints {
        return Err(err(
            StatusCode::CONFLICT,
            "the most endpoints there may be exist already",
        ));
    }
    let (id, secret) = (new_id()?, new_secret()?);
    store
        .add_webhook_endpoint(&id, &settings, &secret.expose(), unix_ms() as i64)
        .await?;
    let endpoint = store.webhook_endpoint(&id).await?;
    tracing::info!(caller = %who.id, endpoint = %id, "webhook endpoint added");
    let mut body = serde_json::to_value(endpoint).unwrap_or_default();
    body["secret"] = secret.expose().into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    summary = "The endpoints this key may see (never their secrets)",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Endpoints", body = [WebhookEndpoint]),
        schema::NoApiKey,
        schema::StoreErrors,
    )
)]
pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
) -> Result<Response, ApiError> {
    let endpoints: Vec<WebhookEndpoint> = store(&state)?
        .webhook_endpoints()
        .await?
        .into_iter()
        .filter(|e| may_manage(&who, &e.rooms).is_ok())
        .collect();
    Ok(Json(endpoints).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    summary = "One endpoint (with its failures and backoff while failing)",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpoint),
        schema::NoApiKey,
        (status = 404, description = "No such endpoint among the key's", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(visible(&state, &who, &id).await?).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/webhooks/{id}",
    operation_id = "update_webhook",
    tag = "webhooks",
    summary = "Change an endpoint's URL, filters or switch (its secret stays)",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = EndpointRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoint as it is now", body = WebhookEndpoint),
        (status = 400, description = "A refused URL, an unknown event type, too many rooms", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use a room the endpoint would receive", body = schema::ErrorBody),
        (status = 404, description = "No such endpoint among the key's", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn update(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<EndpointRequest>,
) -> Result<Response, ApiError> {
    visible(&state, &who, &id).await?;
    let settings = settings(&state, &who, req).await?;
    let store = store(&state)?;
    store.update_webhook_endpoint(&id, &settings).await?;
    Ok(Json(visible(&state, &who, &id).await?).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    summary = "Delete an endpoint; what it had still to receive is dead-lettered",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        schema::NoApiKey,
        (status = 404, description = "No such endpoint among the key's", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible(&state, &who, &id).await?;
    store(&state)?
        .delete_webhook_endpoint(&id, unix_ms() as i64)
        .await?;
    tracing::info!(caller = %who.id, endpoint = %id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateRequest {
    /// How long the old secret still signs beside the new one (default a day, at most a
    /// week; 0: at once no more).
    #[serde(default)]
    overlap_secs: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "rotate_webhook_secret",
    tag = "webhooks",
    summary = "A new signing secret; the old one signs beside it for the overlap",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = RotateRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The new `secret` (in this answer only) and when the old one stops", body = schema::WebhookSecret),
        (status = 400, description = "An overlap longer than a week", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 404, description = "No such endpoint among the key's", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn rotate(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<RotateRequest>>,
) -> Result<Response, ApiError> {
    let endpoint = visible(&state, &who, &id).await?;
    let overlap = body
        .map(|Json(r)| r)
        .unwrap_or_default()
        .overlap_secs
        .unwrap_or(DEFAULT_OVERLAP_SECS);
    if overlap > MAX_OVERLAP_SECS {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "overlap_secs: at most a week (604800)",
        ));
    }
    let now = unix_ms() as i64;
    let old_until = now + overlap as i64 * 1000;
    let secret = new_secret()?;
    // The new one first; the old ones that still sign, until the overlap's end at the latest.
    let mut secrets = vec![StoredSecret {
        secret: secret.expose(),
        expires_at_ms: None,
    }];
    if overlap > 0 {
        secrets.extend(
            endpoint
                .secrets
                .iter()
                .filter(|s| s.expires_at_ms.is_none_or(|at| at > now))
                .map(|s| StoredSecret {
                    secret: s.secret.clone(),
                    expires_at_ms: Some(s.expires_at_ms.map_or(old_until, |at| at.min(old_until))),
                })
                .take(4),
        );
    }
    store(&state)?.set_webhook_secrets(&id, &secrets).await?;
    tracing::info!(caller = %who.id, endpoint = %id, overlap_secs = overlap, "webhook secret rotated");
    Ok(
        Json(json!({"id": id, "secret": secret.expose(), "old_secrets_expire_at_ms": old_until}))
            .into_response(),
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogFilter {
    /// `pending`, `sending`, `delivered` or `dead`; all when absent.
    #[param(value_type = Option<String>)]
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "webhook_deliveries",
    tag = "webhooks",
    summary = "The endpoint's delivery log, newest first: attempts, answers, dead letters",
    params(("id" = String, Path, description = "The endpoint's id"), LogFilter),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deliveries", body = [crate::store::outbox::Delivery]),
        (status = 400, description = "An unknown status", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 404, description = "No such endpoint among the key's", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn deliveries(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<LogFilter>,
) -> Result<Response, ApiError> {
    visible(&state, &who, &id).await?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<DeliveryStatus>)
        .transpose()
        .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    let log = store(&state)?
        .deliveries(Some(&id), status, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(log).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery}/retry",
    operation_id = "retry_webhook_delivery",
    tag = "webhooks",
    summary = "Send a dead (or delivered) delivery again, as a new first attempt",
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("delivery" = String, Path, description = "The delivery's id"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued again"),
        schema::NoApiKey,
        (status = 404, description = "No such endpoint among the key's, or no such delivery of it", body = schema::ErrorBody),
        (status = 409, description = "The delivery is still pending", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn retry(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible(&state, &who, &id).await?;
    let store = store(&state)?;
    match store.delivery(&delivery).await? {
        Some(d) if d.target == id && d.channel == "webhook" => {}
        _ => {
            return Err(err(
                StatusCode::NOT_FOUND,
                "no such delivery of this endpoint",
            ));
        }
    }
    if !store.redeliver(&delivery, unix_ms() as i64).await? {
        return Err(err(StatusCode::CONFLICT, "the delivery is still pending"));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UnsubscribeQuery {
    /// The token in the follow-up's link.
    token: String,
}

#[utoipa::path(
    get,
    path = "/v1/email/unsubscribe",
    operation_id = "email_unsubscribe",
    tag = "webhooks",
    summary = "Stops follow-up e-mails of one room to one address (the link in each e-mail)",
    params(UnsubscribeQuery),
    responses(
        (status = 200, description = "Unsubscribed (a page saying so)", body = String, content_type = "text/html"),
        (status = 400, description = "Not a genuine link", body = String, content_type = "text/html"),
        schema::StoreErrors,
    )
)]
pub(super) async fn unsubscribe(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<UnsubscribeQuery>,
) -> Result<Response, ApiError> {
    unsubscribed(&state, &q.token).await
}

#[utoipa::path(
    post,
    path = "/v1/email/unsubscribe",
    operation_id = "email_unsubscribe_one_click",
    tag = "webhooks",
    summary = "One-click unsubscribe (RFC 8058), as mail clients send it",
    params(UnsubscribeQuery),
    responses(
        (status = 200, description = "Unsubscribed", body = String, content_type = "text/html"),
        (status = 400, description = "Not a genuine link", body = String, content_type = "text/html"),
        schema::StoreErrors,
    )
)]
pub(super) async fn unsubscribe_one_click(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<UnsubscribeQuery>,
) -> Result<Response, ApiError> {
    unsubscribed(&state, &q.token).await
}

async fn unsubscribed(state: &ApiState, token: &str) -> Result<Response, ApiError> {
    let key = crate::integrations::email::unsubscribe_key(&state.config.livekit.api_secret);
    let Some((room, address)) = crate::integrations::email::check_unsubscribe_token(&key, token)
    else {
        return Ok((
            StatusCode::BAD_REQUEST,
            Html("<!DOCTYPE html><p>This unsubscribe link is not valid.</p>"),
        )
            .into_response());
    };
    store(state)?
        .opt_out_email(&room, &address, unix_ms() as i64)
        .await?;
    tracing::info!(%room, "a recipient unsubscribed from follow-up e-mails");
    let room = crate::integrations::email::escape_html(&room);
    Ok(Html(format!(
        "<!DOCTYPE html><p>You will get no more meeting summaries from room <b>{room}</b>.</p>"
    ))
    .into_response())
}
