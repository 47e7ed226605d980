//! The control API (axum): health and readiness, Prometheus metrics, transcripts (list, export,
//! search), participant tokens for the web app (so the LiveKit API secret never reaches a
//! browser), and LiveKit's webhook. Every call but health is authenticated with an API key and
//! authorised per room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::json;

pub mod auth;
pub mod metrics;
mod recordings;
mod settings;

use auth::{Caller, Keys};

use crate::store::{SearchQuery, Store};

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
    pub recorder: Option<crate::session::recording::Recorder>,
    pub room_service: crate::livekit::room_service::RoomService,
    /// Where uploaded background images are kept.
    pub backgrounds_dir: std::path::PathBuf,
}

impl ApiState {
    pub fn new(
        config: &crate::config::Config,
        store: Option<Store>,
        recorder: Option<crate::session::recording::Recorder>,
    ) -> Arc<Self> {
        Arc::new(Self {
            recorder,
            backgrounds_dir: config.data_dir().join("backgrounds"),
            room_service: crate::livekit::room_service::RoomService::new(
                &config.livekit.url,
                &config.livekit.api_key,
                &config.livekit.api_secret,
            ),
            keys: Keys::new(&config.api.keys),
            store,
            livekit_api_key: config.livekit.api_key.clone(),
            livekit_api_secret: config.livekit.api_secret.clone(),
            token_max_ttl: Duration::from_secs(config.api.token_max_ttl_secs),
            token_rate_per_minute: config.api.token_rate_per_minute,
            minted: Mutex::default(),
        })
    }
}

/// An error as the API answers it: a status and a message without secrets.
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

fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.keys.authenticate(authorization).ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer KEY)",
        )
    })
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

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/v1/meetings", get(meetings))
        .route("/v1/meetings/{id}/transcript", get(transcript))
        .route("/v1/search", get(search))
        .route("/v1/tokens", post(mint_token))
        .route("/v1/recordings", get(recordings::list))
        .route("/v1/recordings/{id}/link", get(recordings::link))
        .route(
            "/v1/recordings/{id}/playlist.m3u8",
            get(recordings::playlist),
        )
        .route("/v1/recordings/{id}", delete(recordings::delete))
        .route("/v1/rooms/{room}/recording", put(recordings::switch))
        .route("/v1/rooms/{room}/settings", put(settings::room))
        .route(
            "/v1/rooms/{room}/participants/{identity}/settings",
            put(settings::participant),
        )
        .route(
            "/v1/rooms/{room}/backgrounds",
            post(settings::upload_background).layer(axum::extract::DefaultBodyLimit::max(
                crate::video::background::MAX_BYTES,
            )),
        )
        .route("/v1/livekit/webhook", post(webhook))
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

async fn ready(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    if let Some(store) = &state.store {
        store.ping().await?;
    }
    Ok("ready")
}

async fn metrics_text(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller(&state, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(state.recorder.as_ref().map(|r| r.dir.as_path())),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct RoomFilter {
    room: Option<String>,
}

impl RoomFilter {
    /// The caller, when its key may act on the room asked for (if any).
    fn caller(&self, state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let who = caller(state, headers)?;
        if let Some(room) = &self.room {
            room_allowed(&who, room)?;
        }
        Ok(who)
    }
}

async fn meetings(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<RoomFilter>,
) -> Result<Response, ApiError> {
    let who = q.caller(&state, &headers)?;
    let list: Vec<_> = store(&state)?
        .meetings(q.room.as_deref())
        .await?
        .into_iter()
        .filter(|m| who.may_use(&m.room))
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn transcript(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    let store = store(&state)?;
    let meeting = store
        .meeting(&id)
        .await?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such meeting"))?;
    room_allowed(&who, &meeting.room)?;
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
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        crate::captions::export::export(&segments, format),
    )
        .into_response())
}

#[derive(Deserialize)]
struct SearchParams {
    q: String,
    room: Option<String>,
    speaker: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

async fn search(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(p): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
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
                        format!("{name} must be YYYY-MM-DD"),
                    )
                })
            })
            .transpose()
    };
    let hits = store(&state)?
        .search(&SearchQuery {
            text: p.q,
            room: p.room,
            speaker: p.speaker,
            since_ms: day(&p.since, "since")?,
            until_ms: day(&p.until, "until")?,
            limit: p.limit.unwrap_or(20).clamp(1, 100),
        })
        .await?;
    Ok(Json(hits).into_response())
}

#[derive(Deserialize)]
struct TokenRequest {
    room: String,
    identity: String,
    name: Option<String>,
    #[serde(default = "yes")]
    can_publish: bool,
    #[serde(default = "yes")]
    can_subscribe: bool,
    ttl_secs: Option<u64>,
}

fn yes() -> bool {
    true
}

/// A participant token for one room, with only the asked rights and a short life.
async fn mint_token(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Json(req): Json<TokenRequest>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    room_allowed(&who, &req.room)?;
    if req.identity.is_empty() || req.identity.len() > 128 || req.room.is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "room and identity (at most 128 characters) are required",
        ));
    }
    {
        let mut minted = state.minted.lock().unwrap_or_else(|e| e.into_inner());
        let entry = minted.entry(who.id.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= state.token_rate_per_minute {
            return Err(err(
                StatusCode::TOO_MANY_REQUESTS,
                "token rate limit reached; try again within a minute",
            ));
        }
        entry.1 += 1;
    }
    let ttl = Duration::from_secs(req.ttl_secs.unwrap_or(600)).min(state.token_max_ttl);
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let token = AccessToken::with_api_key(&state.livekit_api_key, &state.livekit_api_secret)
        .with_identity(&req.identity)
        .with_name(req.name.as_deref().unwrap_or(&req.identity))
        .with_ttl(ttl)
        .with_grants(VideoGrants {
            room_join: true,
            room: req.room.clone(),
            can_publish: Some(req.can_publish),
            can_subscribe: Some(req.can_subscribe),
            can_publish_data: Some(req.can_publish),
            ..Default::default()
        })
        .to_jwt()
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the token"))?;
    tracing::info!(caller = %who.id, room = %req.room, identity = %req.identity, ttl_secs = ttl.as_secs(), "participant token minted");
    Ok(Json(json!({"token": token, "room": req.room, "identity": req.identity, "expires_in": ttl.as_secs()})).into_response())
}

/// LiveKit's webhook: the body's SHA-256 must be in a JWT signed with the API secret.
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

async fn webhook(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "webhook without a signature"))?;
    let event = verify_webhook(
        &state.livekit_api_key,
        &state.livekit_api_secret,
        &body,
        &token,
    )?;
    let room = event
        .room
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    tracing::info!(event = %event.event, %room, "webhook");
    if event.event == "room_finished"
        && let Some(store) = &state.store
    {
        let ended = crate::captions::journal::unix_ms() as i64;
        let closed = store.end_open_meetings(&room, ended).await?;
        tracing::info!(%room, closed, "meetings finalised by room_finished");
    }
    Ok(StatusCode::OK.into_response())
}
