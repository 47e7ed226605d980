//! Live HLS through the control API: the recording's segmented playlist (live while it is
//! written, VOD once it ends), its objects named by presigned links, or served here for a
//! browser on the API's own origin (`?via=api`, and always for local storage).

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::openapi::schema;
use super::recordings::linkable;
use super::{ApiError, ApiState, not_found};
use crate::recording::live_hls;

#[derive(Deserialize, utoipa::IntoParams)]
pub(super) struct LiveQuery {
    /// `api`: objects named by this API's paths (one origin for a browser; send the same
    /// `Authorization`). Otherwise presigned storage links.
    via: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/live.m3u8",
    operation_id = "recording_live_playlist",
    tag = "recordings",
    summary = "The recording as segmented HLS: live while it is recorded, VOD once it ends",
    params(("id" = String, Path, description = "The recording's id"), LiveQuery),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (
            status = 200,
            description = "HLS playlist (fMP4 segments of about 2 s from key frames); without \
                `EXT-X-ENDLIST` while the meeting runs",
            body = String,
            content_type = "application/vnd.apple.mpegurl"
        ),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms, or no segment of it yet",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn playlist(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, ApiError> {
    let (meta, recorder, expiry) = linkable(&state, &who, &id).await?;
    let stored = recorder.storage.live_playlist_text(&meta).await?;
    let via_api = q.via.as_deref() == Some("api")
        || recorder.storage.kind() == crate::recording::StorageKind::Local;
    let mut links = std::collections::HashMap::new();
    if !via_api {
        for name in names(&stored) {
            if let Some(link) = recorder.storage.live_link(&meta, &name, expiry).await? {
                links.insert(name, link);
            }
        }
    }
    let text = live_hls::with_links(&stored, |name| {
        links
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("live/{name}"))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response())
}

/// The object names a stored playlist lists.
fn names(stored: &str) -> Vec<String> {
    let mut out = Vec::new();
    live_hls::with_links(stored, |name| {
        out.push(name.to_string());
        String::new()
    });
    out
}

#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/live/{name}",
    operation_id = "recording_live_object",
    tag = "recordings",
    summary = "One object of the recording's segmented HLS (init section or segment)",
    params(
        ("id" = String, Path, description = "The recording's id"),
        ("name" = String, Path, description = "`init.mp4`, `seg-NNNNN.m4s` or `index.m3u8`")
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The object", body = Vec<u8>, content_type = "video/mp4"),
        schema::NoApiKey,
        (
            status = 404,
            description = "No such recording in the key's rooms, or no such object",
            body = schema::ErrorBody
        ),
        schema::RecordingErrors,
    )
)]
pub(super) async fn object(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !live_hls::valid_name(&name) {
        return Err(not_found("object"));
    }
    let (meta, recorder, _) = linkable(&state, &who, &id).await?;
    let bytes = recorder.storage.live_object(&meta, &name).await?;
    // Segments never change once stored; the playlist does.
    let cache = if name == live_hls::PLAYLIST {
        "no-cache"
    } else {
        "private, max-age=3600"
    };
    Ok((
        [
            (header::CONTENT_TYPE, live_hls::content_type(&name)),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}
