//! The web console (issue 19), served by the control API itself: a static page
//! ([`page`], [`asset`], embedded in the binary, no key needed: the page asks for an API key
//! or a participant token and sends it as a bearer on every API call), the summary and session
//! calls it reads, the recording's media through the API ([`media`]) and console access by
//! participant token ([`access`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, not_found, store, visible_meeting};

pub mod access;
pub mod media;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// hls.js from npm (console/package-lock.json), copied here by build.rs; empty when
/// `scripts/console_setup.sh` has not installed it.
const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

/// Whether the player asset (hls.js) was embedded at build time.
pub fn player_installed() -> bool {
    !HLS_JS.is_empty()
}

/// Scripts and styles from this origin only (no inline script, no CDN); media and workers
/// from blob: (hls.js feeds MediaSource); the poster may be a presigned link elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' blob: data: http: https:; media-src 'self' blob:; \
    worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn static_response(content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
    get,
    path = "/console",
    operation_id = "console_page",
    tag = "console",
    summary = "The web console (a static page; it asks for an API key or a participant token)",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html"))
)]
pub(crate) async fn page() -> Response {
    static_response("text/html; charset=utf-8", INDEX_HTML.as_bytes().to_vec())
}

#[utoipa::path(
    get,
    path = "/console/",
    operation_id = "console_page_slash",
    tag = "console",
    summary = "The web console (as `/console`)",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html"))
)]
pub(crate) async fn page_slash() -> Response {
    page().await
}

#[utoipa::path(
    get,
    path = "/console/{file}",
    operation_id = "console_asset",
    tag = "console",
    summary = "The web console's scripts and styles (`app.js`, `app.css`, `hls.min.js`)",
    params(("file" = String, Path, description = "The asset's name")),
    responses(
        (status = 200, description = "The asset", body = String),
        (status = 404, description = "No such asset (or hls.js was not installed at build)", body = schema::ErrorBody),
    )
)]
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    Ok(match file.as_str() {
        "app.js" => static_response("text/javascript; charset=utf-8", APP_JS.as_bytes().to_vec()),
        "app.css" => static_response("text/css; charset=utf-8", APP_CSS.as_bytes().to_vec()),
        "hls.min.js" if player_installed() => {
            static_response("text/javascript; charset=utf-8", HLS_JS.to_vec())
        }
        _ => return Err(not_found("console asset")),
    })
}

/// Who the console is talking as, and what it should offer.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Session {
    /// `operator` (an API key) or `participant` (a participant token: read-only, one room).
    kind: &'static str,
    /// The rooms the caller may read (`*`: every room).
    rooms: Vec<String>,
    /// Whether the caller may delete recordings.
    may_delete: bool,
    /// Recordings are deleted after this many days (0: kept), `recording.retention_days`.
    recording_retention_days: u32,
    /// Per room (of the caller's), `retention.rooms.<room>.recordings_days` where set.
    room_recording_retention_days: std::collections::BTreeMap<String, u32>,
    /// Whether the player (hls.js) is in this build.
    player_installed: bool,
}

#[utoipa::path(
    get,
    path = "/v1/console/session",
    operation_id = "console_session",
    tag = "console",
    summary = "The caller as the console sees it: kind, rooms, retention settings",
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The session", body = Session),
        schema::NoApiKey,
    )
)]
pub(crate) async fn session(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
) -> Json<Session> {
    let rooms = state
        .config
        .retention
        .rooms
        .iter()
        .filter(|(room, _)| who.may_use(room))
        .filter_map(|(room, r)| r.recordings_days.map(|d| (room.clone(), d)))
        .collect();
    Json(Session {
        kind: if who.read_only {
            "participant"
        } else {
            "operator"
        },
        rooms: who.rooms().to_vec(),
        may_delete: !who.read_only,
        recording_retention_days: state.config.recording.retention_days,
        room_recording_retention_days: rooms,
        player_installed: player_installed(),
    })
}

/// A meeting's summary as the agent posted it in the meeting's thread.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MeetingSummary {
    meeting: crate::store::Meeting,
    /// The summary's text (Markdown-like sections), `null` before the agent wrote one.
    summary: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/meetings/{id}/summary",
    operation_id = "get_meeting_summary",
    tag = "meetings",
    summary = "A meeting's summary: key points, decisions, action items, attendance",
    params(("id" = String, Path, description = "The meeting's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The summary", body = MeetingSummary),
        schema::NoApiKey,
        (status = 404, description = "No such meeting in the caller's rooms", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(crate) async fn summary(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<MeetingSummary>, ApiError> {
    let meeting = visible_meeting(&state, &who, &id).await?;
    let parts: Vec<String> = store(&state)?
        .thread(&meeting.id)
        .await?
        .into_iter()
        .filter(|m| m.kind == "summary")
        .map(|m| m.text)
        .collect();
    Ok(Json(MeetingSummary {
        meeting,
        summary: (!parts.is_empty()).then(|| parts.join("")),
    }))
}
