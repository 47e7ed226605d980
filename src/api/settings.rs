//! Per-room and per-participant settings through the control API, carried the way the agent
//! reads them: room switches in the room's metadata, participant switches in the participant's
//! attributes (both set through LiveKit's RoomService); and background images uploaded for
//! virtual backgrounds.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState, caller, err, room_allowed};
use crate::captions::CaptionLanguage;
use crate::livekit::room_service::RoomServiceError;
use crate::session::camera::{VB_BLUR, VB_IMAGE, VB_MODE};
use crate::session::controls::{CAPTIONS_ENABLED, CAPTIONS_LANGUAGE, NS_CLEAN_TRACK, NS_ENABLED};
use crate::session::recording::RECORDING_SWITCH;

/// Switches a room's metadata may carry.
const ROOM_KEYS: [&str; 5] = [
    CAPTIONS_ENABLED,
    CAPTIONS_LANGUAGE,
    NS_ENABLED,
    NS_CLEAN_TRACK,
    RECORDING_SWITCH,
];
/// Attributes the API may set on a participant.
const PARTICIPANT_KEYS: [&str; 7] = [
    CAPTIONS_ENABLED,
    CAPTIONS_LANGUAGE,
    NS_ENABLED,
    NS_CLEAN_TRACK,
    VB_MODE,
    VB_BLUR,
    VB_IMAGE,
];

fn room_service_error(e: RoomServiceError) -> ApiError {
    match e {
        RoomServiceError::NoSuchRoom(_) => err(StatusCode::NOT_FOUND, "no such room"),
        e => {
            tracing::warn!(error = %e, "room service error in an API call");
            err(
                StatusCode::BAD_GATEWAY,
                "the LiveKit server did not take the change",
            )
        }
    }
}

/// A JSON object of allowed keys with boolean (or, for `vb.*` and the caption language,
/// string/number) values, as the strings the agent parses.
fn settings(body: &Value, allowed: &[&str]) -> Result<Vec<(String, Value)>, ApiError> {
    let Some(object) = body.as_object().filter(|o| !o.is_empty()) else {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "expected a JSON object of settings",
        ));
    };
    object
        .iter()
        .map(|(k, v)| {
            if !allowed.contains(&k.as_str()) {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("unknown setting {k:?}; known: {}", allowed.join(", ")),
                ));
            }
            let ok = match k.as_str() {
                VB_MODE => v
                    .as_str()
                    .is_some_and(|m| ["off", "blur", "image"].contains(&m)),
                VB_BLUR => v.as_u64().is_some_and(|b| (1..=10).contains(&b)),
                VB_IMAGE => v.as_str().is_some_and(|s| !s.is_empty() && s.len() < 2048),
                CAPTIONS_LANGUAGE => v
                    .as_str()
                    .is_some_and(|s| s.len() < 32 && CaptionLanguage::parse(s).is_ok()),
                _ => v.is_boolean(),
            };
            if !ok {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    format!("bad value for {k:?}: {v}"),
                ));
            }
            Ok((k.clone(), v.clone()))
        })
        .collect()
}

/// `PUT /v1/rooms/{room}/settings {"captions.enabled": false, "captions.language": "de", ...}`:
/// room-wide switches.
pub(super) async fn room(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    room_allowed(&who, &room)?;
    state
        .room_service
        .set_switches(&room, settings(&body, &ROOM_KEYS)?)
        .await
        .map_err(room_service_error)?;
    let metadata = state
        .room_service
        .room_metadata(&room)
        .await
        .map_err(room_service_error)?;
    let switches: Value = serde_json::from_str(&metadata).unwrap_or(Value::Null);
    Ok(Json(json!({"room": room, "settings": switches})).into_response())
}

/// `PUT /v1/rooms/{room}/participants/{identity}/settings {"vb.mode": "blur", ...}`.
pub(super) async fn participant(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((room, identity)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    room_allowed(&who, &room)?;
    let attributes: HashMap<String, String> = settings(&body, &PARTICIPANT_KEYS)?
        .into_iter()
        .map(|(k, v)| {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            (k, text)
        })
        .collect();
    state
        .room_service
        .set_attributes(&room, &identity, &attributes)
        .await
        .map_err(room_service_error)?;
    Ok(Json(json!({"room": room, "identity": identity, "settings": attributes})).into_response())
}

/// `POST /v1/rooms/{room}/backgrounds` with a PNG or JPEG body (at most
/// `video::background::MAX_BYTES`): checked like any background, stored under the data
/// folder by content hash; the answer's `image` is the value for `vb.image`.
pub(super) async fn upload_background(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(&state, &headers)?;
    room_allowed(&who, &room)?;
    let bytes = body.to_vec();
    let checked = tokio::task::spawn_blocking(move || {
        crate::video::background::decode(&bytes).map(|img| (img.dimensions(), bytes))
    })
    .await
    .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "image check failed"))?;
    let ((width, height), bytes) = checked.map_err(|e| match e {
        crate::video::background::BackgroundError::TooLarge => {
            err(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        e => err(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    let ext = match image::guess_format(&bytes) {
        Ok(image::ImageFormat::Png) => "png",
        _ => "jpg",
    };
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = state
        .backgrounds_dir
        .join(crate::recording::meta::key_safe(&room));
    let path = dir.join(format!("{digest}.{ext}"));
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!(".{digest}.tmp"));
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    };
    write.await.map_err(|e| {
        tracing::error!(error = %e, "cannot store an uploaded background");
        err(
            StatusCode::INSUFFICIENT_STORAGE,
            "the background could not be stored",
        )
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "image": path.to_string_lossy(),
            "bytes": bytes.len(),
            "width": width,
            "height": height,
        })),
    )
        .into_response())
}
