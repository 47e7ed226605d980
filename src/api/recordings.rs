//! Recordings through the control API: list, playback link, delete, and starting or stopping
//! a room's recording (by the room switch the agent in the room follows).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState, RoomFilter, caller, err, room_allowed};
use crate::recording::{RecordingError, RecordingMeta};
use crate::session::recording::{RECORDING_SWITCH, Recorder};

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NotFound(_) => err(StatusCode::NOT_FOUND, "no such recording"),
            e => {
                tracing::warn!(error = %e, "recording storage error in an API call");
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "recording storage is unavailable",
                )
            }
        }
    }
}

fn recorder(state: &ApiState) -> Result<&Recorder, ApiError> {
    state
        .recorder
        .as_ref()
        .ok_or_else(|| err(StatusCode::NOT_IMPLEMENTED, "recording is not available"))
}

async fn find(state: &ApiState, id: &str) -> Result<RecordingMeta, ApiError> {
    recorder(state)?
        .storage
        .list()
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such recording"))
}

/// The recording `id`, when the caller's key may act on its room.
async fn authorized(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<RecordingMeta, ApiError> {
    let who = caller(state, headers)?;
    let meta = find(state, id).await?;
    room_allowed(&who, &meta.room)?;
    Ok(meta)
}

pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<RoomFilter>,
) -> Result<Response, ApiError> {
    let who = q.caller(&state, &headers)?;
    let list: Vec<RecordingMeta> = recorder(&state)?
        .storage
        .list()
        .await?
        .into_iter()
        .filter(|m| who.may_use(&m.room) && q.room.as_ref().is_none_or(|r| *r == m.room))
        .collect();
    Ok(Json(list).into_response())
}

pub(super) async fn link(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = authorized(&state, &headers, &id).await?;
    let recorder = recorder(&state)?;
    let expiry = Duration::from_secs(recorder.config.link_expiry_secs);
    let url = recorder.storage.link(&meta, expiry).await?;
    Ok(Json(json!({"url": url, "expires_in_secs": expiry.as_secs()})).into_response())
}

/// `GET /v1/recordings/{id}/playlist.m3u8`: the recording as HLS (fMP4 byte ranges), its
/// segments pointing into a link that expires like `/link`'s.
pub(super) async fn playlist(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = authorized(&state, &headers, &id).await?;
    let recorder = recorder(&state)?;
    let expiry = Duration::from_secs(recorder.config.link_expiry_secs);
    let text = recorder.storage.hls_playlist(&meta, expiry).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.apple.mpegurl",
        )],
        text,
    )
        .into_response())
}

pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = authorized(&state, &headers, &id).await?;
    recorder(&state)?.delete(&meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct RecordingSwitch {
    enabled: bool,
}

/// `PUT /v1/rooms/{room}/recording {"enabled": true}`: sets the room's switch; the agent in
/// the room starts or stops recording within a moment.
pub(super) async fn switch(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Json(body): Json<RecordingSwitch>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    room_allowed(&who, &room)?;
    state
        .room_service
        .set_switches(&room, [(RECORDING_SWITCH.to_string(), json!(body.enabled))])
        .await
        .map_err(|e| match e {
            crate::livekit::room_service::RoomServiceError::NoSuchRoom(_) => {
                err(StatusCode::NOT_FOUND, "no such room")
            }
            e => {
                tracing::warn!(error = %e, "room service error in an API call");
                err(
                    StatusCode::BAD_GATEWAY,
                    "the LiveKit server did not take the change",
                )
            }
        })?;
    Ok(Json(json!({"room": room, "recording": body.enabled})).into_response())
}
