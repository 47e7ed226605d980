//! Recordings through the control API: list, playback link, delete, and starting or stopping
//! a room's recording (by the room switch the agent in the room follows).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Caller;
use super::openapi::schema;
use super::settings::room_service_error;
use super::{ApiError, ApiState, RoomFilter, err, not_found, room_allowed};
use crate::features::recording::PerParticipant;
use crate::features::recording::Recorder;
use crate::protocol::{RECORDING_PER_PARTICIPANT, RECORDING_SWITCH};
use crate::recording::{RecordingError, RecordingMeta};

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        match e {
            RecordingError::NotFound(_) => not_found("recording"),
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

/// The store recordings are listed in, when there is one: the recorder's, else the API's.
fn recordings_store<'a>(
    state: &'a ApiState,
    recorder: &'a Recorder,
) -> Option<&'a crate::store::Store> {
    recorder.store.as_ref().or(state.store.as_ref())
}

/// The recording `id`, when the caller's key may act on its room: looked up by id in the
/// store's `recordings` table; only without a store is storage's metadata listed. Another
/// room's recording is answered like one that does not exist.
async fn authorized(state: &ApiState, who: &Caller, id: &str) -> Result<RecordingMeta, ApiError> {
    let recorder = recorder(state)?;
    let meta = match recordings_store(state, recorder) {
        Some(store) => store.recording(id).await?,
        None => recorder
            .storage
            .list()
            .await?
            .into_iter()
            .find(|m| m.id == id),
    };
    meta.filter(|m| who.may_use(&m.room))
        .ok_or_else(|| not_found("recording"))
}

/// What every link to a recording's objects needs: the recording (if the caller may see it),
/// the recorder, and how long links last (`recording.link_expiry_secs`).
pub(super) async fn linkable<'a>(
    state: &'a ApiState,
    who: &Caller,
    id: &str,
) -> Result<(RecordingMeta, &'a Recorder, Duration), ApiError> {
    let meta = authorized(state, who, id).await?;
    let recorder = recorder(state)?;
    Ok((
        meta,
        recorder,
        Duration::from_secs(recorder.config.link_expiry_secs),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/recordings",
    operation_id = "list_recordings",
    tag = "recordings",
    summary = "The key's rooms' recordings",
    params(super::RoomFilter),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Recordings", body = [crate::recording::RecordingMeta]),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        schema::RecordingErrors,
    )
)]
pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Query(q): Query<RoomFilter>,
) -> Result<Response, ApiError> {
    q.check(&who)?;
    let recorder = recorder(&state)?;
    let all = match recordings_store(&state, recorder) {
        Some(store) => store.recordings(q.room.as_deref()).await?,
        None => recorder.storage.list().await?,
    };
    let list: Vec<RecordingMeta> = all
        .into_iter()
        .filter(|m| who.may_use(&m.room) && q.room.as_ref().is_none_or(|r| *r == m.room))
        .collect();
    Ok(Json(list).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/link",
    operation_id = "recording_link",
    tag = "recordings",
    summary = "A link to the recording's file that expires",
    params(("id" = String, Path, description = "The recording's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The link", body = schema::RecordingLink),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn link(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (meta, recorder, expiry) = linkable(&state, &who, &id).await?;
    let url = recorder.storage.link(&meta, expiry).await?;
    Ok(Json(json!({"url": url, "expires_in_secs": expiry.as_secs()})).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PlaylistQuery {
    /// `link` (the default): the media is a link that expires (presigned, or `file://`);
    /// `api`: the media is `/v1/recordings/{id}/media` (same origin, with the bearer: the
    /// web console's player).
    via: Option<String>,
}

/// `GET /v1/recordings/{id}/playlist.m3u8`: the recording as HLS (fMP4 byte ranges), its
/// segments pointing into a link that expires like `/link`'s.
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/playlist.m3u8",
    operation_id = "recording_playlist",
    tag = "recordings",
    summary = "The recording as an HLS playlist",
    params(("id" = String, Path, description = "The recording's id"), PlaylistQuery),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (
            status = 200,
            description = "HLS playlist (fMP4 byte ranges)",
            body = String,
            content_type = "application/vnd.apple.mpegurl"
        ),
        (status = 400, description = "`via` is neither `link` nor `api`", body = schema::ErrorBody),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn playlist(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PlaylistQuery>,
) -> Result<Response, ApiError> {
    let (meta, recorder, expiry) = linkable(&state, &who, &id).await?;
    let text = match q.via.as_deref() {
        None | Some("link") => recorder.storage.hls_playlist(&meta, expiry).await?,
        Some("api") => super::console::media::api_playlist(&recorder.storage, &meta).await?,
        Some(_) => return Err(err(StatusCode::BAD_REQUEST, "via must be link or api")),
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.apple.mpegurl",
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/poster",
    operation_id = "recording_poster",
    tag = "recordings",
    summary = "A link to the recording's poster (JPEG, its most detailed picture) that expires",
    params(("id" = String, Path, description = "The recording's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The link", body = schema::RecordingLink),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms, or it has no poster",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn poster(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (meta, recorder, expiry) = linkable(&state, &who, &id).await?;
    let url = recorder.storage.thumbnail_link(&meta, 0, expiry).await?;
    Ok(Json(json!({"url": url, "expires_in_secs": expiry.as_secs()})).into_response())
}

/// `GET /v1/recordings/{id}/thumbnails.vtt`: the timeline thumbnails as a WebVTT track, each
/// cue a region (`#xywh=`) of a sprite link that expires like `/link`'s.
#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/thumbnails.vtt",
    operation_id = "recording_thumbnails",
    tag = "recordings",
    summary = "The recording's timeline thumbnails as a WebVTT track",
    params(("id" = String, Path, description = "The recording's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (
            status = 200,
            description = "WebVTT; each cue names a region of the sprite sheet (`#xywh=x,y,w,h`)",
            body = String,
            content_type = "text/vtt"
        ),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms, or it has no thumbnails",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn thumbnails(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (meta, recorder, expiry) = linkable(&state, &who, &id).await?;
    let text = recorder.storage.thumbnail_track(&meta, expiry).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/vtt")], text).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/recordings/{id}",
    operation_id = "delete_recording",
    tag = "recordings",
    summary = "Deletes the recording, its metadata and its row in the store",
    params(("id" = String, Path, description = "The recording's id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = authorized(&state, &who, &id).await?;
    recorder(&state)?.delete(&meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
pub(super) struct RecordingSwitch {
    enabled: bool,
    /// Also record each selected participant's microphone on its own (M4A), while the room
    /// records; absent: unchanged. `{"audio": false}` stops asking for them.
    #[serde(default)]
    per_participant: Option<PerParticipant>,
}

/// `PUT /v1/rooms/{room}/recording {"enabled": true}`: sets the room's switch; the agent in
/// the room starts or stops recording within a moment. With `"per_participant": {"audio":
/// true, "identities": [...]}` it also records those participants' microphones on their own.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/recording",
    operation_id = "switch_recording",
    tag = "recordings",
    summary = "Starts or stops the room's recording",
    params(("room" = String, Path, description = "The room")),
    request_body = RecordingSwitch,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The switch is set", body = schema::RecordingSwitched),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        (status = 404, description = "No such room", body = schema::ErrorBody),
        schema::LiveKitErrors,
    )
)]
pub(super) async fn switch(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(room): Path<String>,
    Json(body): Json<RecordingSwitch>,
) -> Result<Response, ApiError> {
    room_allowed(&who, &room)?;
    let mut switches = vec![(RECORDING_SWITCH.to_string(), json!(body.enabled))];
    if let Some(per_participant) = &body.per_participant {
        if let Some(why) = per_participant.invalid() {
            return Err(err(StatusCode::BAD_REQUEST, why));
        }
        if let Some(limit) = state
            .recorder
            .as_ref()
            .map(|r| r.config.max_participant_recordings)
            && per_participant.identities.len() > limit
        {
            return Err(err(
                StatusCode::BAD_REQUEST,
                format!(
                    "at most {limit} participants are recorded on their own in a room \
                     (recording.max_participant_recordings)"
                ),
            ));
        }
        let value = if per_participant.audio {
            json!(per_participant)
        } else {
            json!(false)
        };
        switches.push((RECORDING_PER_PARTICIPANT.to_string(), value));
    }
    state
        .room_service
        .set_switches(&room, switches)
        .await
        .map_err(room_service_error)?;
    let mut answer = json!({"room": room, "recording": body.enabled});
    if let Some(p) = body.per_participant.filter(|p| p.audio) {
        answer["per_participant"] = json!(p);
    }
    Ok(Json(answer).into_response())
}
