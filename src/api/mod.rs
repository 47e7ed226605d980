//! The control API (axum): health and readiness, Prometheus metrics, transcripts (list, export,
//! search), participant tokens for the web app (so the LiveKit API secret never reaches a
//! browser), and LiveKit's webhook. Every call but health is authenticated with an API key and
//! authorised per room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use utoipa::IntoParams;

pub mod auth;
mod compliance;
pub mod console;
pub mod controls;
mod live;
mod media;
pub mod metrics;
pub mod openapi;
mod quality;
mod recordings;
mod settings;
pub mod tokens;
pub mod webhook;
mod webhooks;

use auth::{Caller, Keys};
use openapi::schema;
pub use webhook::verify_webhook;

use crate::store::{SearchQuery, Store};
use crate::video::background_source::SourcePolicy;

/// Limits every call is served under (`[api]` in the configuration).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest body of a JSON call (and of a webhook).
    pub max_body_bytes: usize,
    /// A call still running after this is answered 503.
    pub request_timeout: Duration,
    /// Background images kept per room, and their bytes.
    pub background_max_count: u32,
    pub background_max_bytes: u64,
    /// Uploaded backgrounds older than this are deleted; `None`: kept.
    pub background_expiry: Option<Duration>,
}

impl ApiLimits {
    pub fn from_config(api: &crate::config::ApiConfig) -> Self {
        Self {
            max_body_bytes: api.max_body_bytes,
            request_timeout: Duration::from_secs(api.request_timeout_secs.max(1)),
            background_max_count: api.background_max_count,
            background_max_bytes: api.background_max_bytes,
            background_expiry: (api.background_expiry_days > 0)
                .then(|| Duration::from_secs(u64::from(api.background_expiry_days) * 86_400)),
        }
    }
}

/// What the API needs from the process.
pub struct ApiState {
    pub keys: Keys,
    pub store: Option<Store>,
    pub livekit_api_key: String,
    pub livekit_api_secret: String,
    pub token_max_ttl: Duration,
    pub token_rate_per_minute: u32,
    /// Tokens minted per caller in the current minute.
    minted: Mutex<HashMap<String, (Instant, u32)>>,
    /// Recordings, when the process records.
    pub recorder: Option<crate::features::recording::Recorder>,
    pub room_service: crate::livekit::room_service::RoomService,
    /// Where uploaded background images are kept, and which `vb.image` values are allowed.
    pub backgrounds: SourcePolicy,
    pub limits: ApiLimits,
    /// Identities minted tokens may take.
    pub identities: tokens::IdentityPolicy,
    /// Calls being served; a call that finds none free is answered 503.
    in_flight: Arc<Semaphore>,
    /// Webhook event ids already handled, when there is no store to keep them.
    webhooks_seen: Mutex<webhook::SeenEvents>,
    /// Serialises background uploads (quota accounting) within the process.
    uploads: tokio::sync::Mutex<()>,
    /// Serialises role changes (a read-modify-write of the room's roles) within the process.
    roles_lock: tokio::sync::Mutex<()>,
    /// The whole configuration, for the retention pass (its policy, media folder and bucket).
    config: crate::config::Config,
    /// `control.action` for webhooks (with the store).
    events: Option<crate::integrations::Events>,
}

impl ApiState {
    pub fn new(
        config: &crate::config::Config,
        store: Option<Store>,
        recorder: Option<crate::features::recording::Recorder>,
    ) -> Arc<Self> {
        let backgrounds = SourcePolicy::from_config(config);
        let limits = ApiLimits::from_config(&config.api);
        // Expired uploads go at start too, not only when the next one arrives.
        settings::sweep_expired_backgrounds(&backgrounds, limits.background_expiry);
        Arc::new(Self {
            recorder,
            backgrounds,
            limits,
            identities: tokens::IdentityPolicy::from_config(&config.api),
            room_service: crate::livekit::room_service::RoomService::new(
                &config.livekit.url,
                &config.livekit.api_key,
                &config.livekit.api_secret,
            ),
            keys: Keys::new(&config.api.keys),
            store: store.clone(),
            livekit_api_key: config.livekit.api_key.clone(),
            livekit_api_secret: config.livekit.api_secret.clone(),
            token_max_ttl: Duration::from_secs(
                config
                    .api
                    .token_max_ttl_secs
                    .clamp(1, crate::config::TOKEN_MAX_TTL_LIMIT_SECS),
            ),
            token_rate_per_minute: config.api.token_rate_per_minute,
            minted: Mutex::default(),
            in_flight: Arc::new(Semaphore::new(config.api.max_concurrent_requests.max(1))),
            webhooks_seen: Mutex::default(),
            uploads: tokio::sync::Mutex::new(()),
            roles_lock: tokio::sync::Mutex::new(()),
            events: store
                .clone()
                .map(|s| crate::integrations::Events::new(s, &config.webhooks)),
            config: config.clone(),
        })
    }
}

/// An error as the API answers it: a status and a message without secrets.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "store error in an API call");
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the messaging store is unavailable",
        )
    }
}

/// An API key's caller, else a participant token's (read-only, one room: the web console).
fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(caller) = state.keys.authenticate(authorization) {
        return Ok(caller);
    }
    console::access::participant_caller(state, authorization).map_err(|_| {
        err(
            StatusCode::UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer KEY), or a participant token of the room",
        )
    })
}

/// For what belongs to no room (metrics, media jobs, retention, conversations): a key for
/// every room (`rooms = ["*"]`) only.
fn every_room(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.all_rooms() {
        Ok(())
    } else {
        Err(err(
            StatusCode::FORBIDDEN,
            format!("{what} need a key for every room (rooms = [\"*\"])"),
        ))
    }
}

fn room_allowed(caller: &Caller, room: &str) -> Result<(), ApiError> {
    if caller.may_use(room) {
        Ok(())
    } else {
        Err(err(
            StatusCode::FORBIDDEN,
            format!("this key may not act on room {room:?}"),
        ))
    }
}

fn store(state: &ApiState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        err(
            StatusCode::NOT_IMPLEMENTED,
            "no messaging store is configured",
        )
    })
}

/// Authenticates every call of the routes it wraps from its headers alone, before anything
/// reads the body: an unknown key is answered 401 whatever is still being sent. The caller
/// goes into the request's extensions for the handler.
async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let who = caller(&state, req.headers())?;
    if who.read_only && !console::access::read_only_may(req.method(), req.uri().path()) {
        return Err(console::access::refused());
    }
    req.extensions_mut().insert(who);
    Ok(next.run(req).await)
}

/// Every call: at most `api.max_concurrent_requests` at once (more are answered 503 at once,
/// never queued) and each within `api.request_timeout_secs` (503 past it). `/healthz` is
/// never refused for load, so liveness does not flap under it.
async fn guard(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let permit = if req.uri().path() == "/healthz" {
        None
    } else {
        match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return (
                    [(header::RETRY_AFTER, "1")],
                    err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many calls at once; retry",
                    ),
                )
                    .into_response();
            }
        }
    };
    let response = match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => err(StatusCode::SERVICE_UNAVAILABLE, "the call took too long").into_response(),
    };
    drop(permit);
    response
}

pub fn router(state: Arc<ApiState>) -> Router {
    // Everything here needs a key, checked before the body is read.
    let authenticated = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/meetings", get(meetings))
        .route("/v1/meetings/{id}/transcript", get(transcript))
        .route("/v1/meetings/{id}/quality", get(quality::meeting_quality))
        .route(
            "/v1/meetings/{id}/engagement",
            get(quality::meeting_engagement),
        )
        .route("/v1/analytics/usage", get(quality::usage))
        .route("/v1/search", get(search))
        .route("/v1/tokens", post(tokens::mint_token))
        .route("/v1/recordings", get(recordings::list))
        .route("/v1/recordings/{id}/link", get(recordings::link))
        .route("/v1/recordings/{id}/media", get(console::media::media))
        .route("/v1/meetings/{id}/summary", get(console::summary))
        .route("/v1/console/session", get(console::session))
        .route("/v1/recordings/{id}/poster", get(recordings::poster))
        .route(
            "/v1/recordings/{id}/thumbnails.vtt",
            get(recordings::thumbnails),
        )
        .route(
            "/v1/recordings/{id}/playlist.m3u8",
            get(recordings::playlist),
        )
        .route("/v1/recordings/{id}/live.m3u8", get(live::playlist))
        .route("/v1/recordings/{id}/live/{name}", get(live::object))
        .route("/v1/recordings/{id}", delete(recordings::delete))
        .route("/v1/rooms/{room}/recording", put(recordings::switch))
        .route("/v1/rooms/{room}/settings", put(settings::room))
        .route("/v1/media-jobs", post(media::enqueue).get(media::list))
        .route("/v1/retention/run", post(compliance::retention))
        .route(
            "/v1/meetings/{id}/archive",
            get(compliance::meeting_archive),
        )
        .route(
            "/v1/conversations/{id}/archive",
            get(compliance::conversation_archive),
        )
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/rotate-secret", post(webhooks::rotate))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}/retry",
            post(webhooks::retry),
        )
        .route("/v1/media-jobs/{message_id}", get(media::get))
        .route("/v1/media-jobs/{message_id}/rerun", post(media::rerun))
        .route(
            "/v1/rooms/{room}/participants/{identity}/settings",
            put(settings::participant),
        )
        .route(
            "/v1/rooms/{room}/backgrounds",
            // The innermost limit wins: uploads may be larger than JSON calls.
            post(settings::upload_background)
                .layer(DefaultBodyLimit::max(crate::video::background::MAX_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    // Meeting controls: an API key or the caller's own participant token.
    let controls = Router::new()
        .route(
            "/v1/rooms/{room}/participants/{identity}/mute",
            post(controls::mute_one),
        )
        .route(
            "/v1/rooms/{room}/participants/{identity}/release",
            post(controls::release),
        )
        .route(
            "/v1/rooms/{room}/participants/{identity}",
            delete(controls::remove),
        )
        .route(
            "/v1/rooms/{room}/participants/{identity}/role",
            put(controls::set_role),
        )
        .route("/v1/rooms/{room}/mute-all", post(controls::mute_all))
        .route("/v1/rooms/{room}/lock", put(controls::lock))
        .route("/v1/rooms/{room}/spotlight", put(controls::spotlight))
        .route("/v1/rooms/{room}/audit", get(controls::audit_log))
        .route(
            "/v1/rooms/{room}/waiting-room",
            put(controls::waiting::settings),
        )
        .route("/v1/rooms/{room}/waiting", get(controls::waiting::list))
        .route(
            "/v1/rooms/{room}/breakouts",
            post(controls::breakouts::open)
                .get(controls::breakouts::list)
                .delete(controls::breakouts::close),
        )
        .route(
            "/v1/rooms/{room}/breakouts/move",
            post(controls::breakouts::move_one),
        )
        .route(
            "/v1/rooms/{room}/breakouts/broadcast",
            post(controls::breakouts::broadcast),
        )
        .route(
            "/v1/rooms/{room}/waiting/admit-all",
            post(controls::waiting::admit_all),
        )
        .route(
            "/v1/rooms/{room}/waiting/{identity}/admit",
            post(controls::waiting::admit_one),
        )
        .route(
            "/v1/rooms/{room}/waiting/{identity}/deny",
            post(controls::waiting::deny),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            controls::authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/v1/openapi.json", get(openapi::serve))
        // The web console's static page and assets (it asks for a key or token itself).
        .route("/console", get(console::page))
        .route("/console/", get(console::page_slash))
        .route("/console/{file}", get(console::asset))
        // The signed link in a follow-up e-mail is its own authorisation.
        .route(
            "/v1/email/unsubscribe",
            get(webhooks::unsubscribe).post(webhooks::unsubscribe_one_click),
        )
        // Signed by LiveKit instead of an API key (checked before the body is read, too).
        .route("/v1/livekit/webhook", post(webhook::webhook))
        .merge(authenticated)
        .merge(controls)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves the API on `listener` until the process ends.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "control API listening");
    axum::serve(listener, router(state)).await
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Liveness (never refused for load)",
    responses((status = 200, description = "`ok`", body = String))
)]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    summary = "Readiness: the messaging store answers",
    responses(
        (status = 200, description = "`ready`", body = String),
        (status = 503, description = "The store is unavailable", body = schema::ErrorBody),
    )
)]
async fn ready(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    if let Some(store) = &state.store {
        store.ping().await?;
    }
    Ok("ready")
}

/// `GET /metrics`: process-wide counters, so only for keys of every room (`*`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics (keys of every room only)",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
    )
)]
async fn metrics_text(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
) -> Result<Response, ApiError> {
    every_room(&who, "metrics")?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(state.recorder.as_ref().map(|r| r.dir.as_path())),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RoomFilter {
    /// Only this room (one the key may use).
    room: Option<String>,
}

impl RoomFilter {
    /// Refused when the caller's key may not act on the room asked for (if any).
    fn check(&self, who: &Caller) -> Result<(), ApiError> {
        if let Some(room) = &self.room {
            room_allowed(who, room)?;
        }
        Ok(())
    }
}

/// The answer for an id (meeting, recording) the caller's key may not see: the same as for an
/// id that does not exist, so ids of other rooms cannot be probed.
fn not_found(what: &str) -> ApiError {
    err(StatusCode::NOT_FOUND, format!("no such {what}"))
}

/// The meeting `id` if `who` may use its room; another room's meeting is answered like one
/// that does not exist.
async fn visible_meeting(
    state: &ApiState,
    who: &Caller,
    id: &str,
) -> Result<crate::store::Meeting, ApiError> {
    store(state)?
        .meeting(id)
        .await?
        .filter(|m| who.may_use(&m.room))
        .ok_or_else(|| not_found("meeting"))
}

#[utoipa::path(
    get,
    path = "/v1/meetings",
    operation_id = "list_meetings",
    tag = "meetings",
    summary = "The key's rooms' meetings",
    params(RoomFilter),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Meetings", body = [crate::store::Meeting]),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
async fn meetings(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Query(q): Query<RoomFilter>,
) -> Result<Response, ApiError> {
    q.check(&who)?;
    let list: Vec<_> = store(&state)?
        .meetings(q.room.as_deref())
        .await?
        .into_iter()
        .filter(|m| who.may_use(&m.room))
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FormatQuery {
    /// `vtt` when absent.
    #[param(value_type = Option<schema::TranscriptFormat>)]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/meetings/{id}/transcript",
    operation_id = "get_transcript",
    tag = "meetings",
    summary = "A meeting's transcript",
    params(("id" = String, Path, description = "The meeting's id"), FormatQuery),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The transcript in the format asked for", content(
            (String = "text/vtt"),
            (String = "application/x-subrip"),
            ([crate::store::Segment] = "application/json"),
            (String = "text/plain"),
        )),
        (status = 400, description = "Unknown format", body = schema::ErrorBody),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such meeting in the key's rooms",
            body = schema::ErrorBody
        ),
        schema::StoreErrors,
    )
)]
async fn transcript(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let meeting = visible_meeting(&state, &who, &id).await?;
    let store = store(&state)?;
    let format: crate::captions::export::Format = q
        .format
        .as_deref()
        .unwrap_or("vtt")
        .parse()
        .map_err(|e: String| err(StatusCode::BAD_REQUEST, e))?;
    let content_type = match format {
        crate::captions::export::Format::WebVtt => "text/vtt; charset=utf-8",
        crate::captions::export::Format::Srt => "application/x-subrip; charset=utf-8",
        crate::captions::export::Format::Json => "application/json",
        crate::captions::export::Format::Text => "text/plain; charset=utf-8",
    };
    let segments = store.segments(&meeting.id).await?;
    let notes = store.meeting_notes(&meeting).await?;
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        crate::captions::export::export_with_notes(&segments, &notes, format),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// The words to find.
    q: String,
    /// Required for a key limited to some rooms.
    room: Option<String>,
    /// A speaker (transcripts) or sender (messages).
    speaker: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    since: Option<String>,
    /// `YYYY-MM-DD`, exclusive.
    until: Option<String>,
    /// 1 to 100; 20 when absent.
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/search",
    operation_id = "search",
    tag = "meetings",
    summary = "Full-text search over the meeting threads the agent wrote",
    params(SearchParams),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = [crate::store::SearchHit]),
        (status = 400, description = "A bad date", body = schema::ErrorBody),
        schema::NoApiKey,
        (
            status = 403,
            description = "The key may not use the room, or must name one",
            body = schema::ErrorBody
        ),
        schema::StoreErrors,
    )
)]
async fn search(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Query(p): Query<SearchParams>,
) -> Result<Response, ApiError> {
    match &p.room {
        Some(room) => room_allowed(&who, room)?,
        None if !who.all_rooms() => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "this key must name a room it may use",
            ));
        }
        None => {}
    }
    let day = |d: &Option<String>, name: &str| -> Result<Option<i64>, ApiError> {
        d.as_deref()
            .map(|d| {
                crate::summary::parse_day_ms(d).ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        format!("{name} must be YYYY-MM-DD (years 1970 to 9999)"),
                    )
                })
            })
            .transpose()
    };
    let hits: Vec<_> = store(&state)?
        .search(&SearchQuery {
            text: p.q,
            room: p.room,
            speaker: p.speaker,
            since_ms: day(&p.since, "since")?,
            until_ms: day(&p.until, "until")?,
            limit: p.limit.unwrap_or(20).clamp(1, 100),
        })
        .await?
        .into_iter()
        // The store searches meeting threads only; every hit names its room.
        .filter(|h| h.room.as_deref().is_some_and(|r| who.may_use(r)))
        .collect();
    Ok(Json(hits).into_response())
}
