//! Per-room and per-participant settings through the control API, carried the way the agent
//! reads them: room switches in the room's metadata, participant switches in the participant's
//! attributes (both set through LiveKit's RoomService); and background images uploaded for
//! virtual backgrounds.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, room_allowed};
use crate::captions::CaptionLanguage;
use crate::livekit::room_service::RoomServiceError;
use crate::protocol::{CAPTIONS_LANGUAGE, NS_MODEL, VB_BLUR, VB_IMAGE, VB_MODE};
use crate::video::background_source::{SourcePolicy, is_upload_file_name, upload_id};

use crate::protocol::{PARTICIPANT_SWITCHES as PARTICIPANT_KEYS, ROOM_SWITCHES as ROOM_KEYS};

/// Temporary files of uploads older than this are swept (an upload that died mid-write).
const STALE_TEMP: Duration = Duration::from_secs(3600);

pub(super) fn room_service_error(e: RoomServiceError) -> ApiError {
    match e {
        RoomServiceError::NoSuchRoom(_) => err(StatusCode::NOT_FOUND, "no such room"),
        RoomServiceError::NoSuchParticipant { .. } => {
            err(StatusCode::NOT_FOUND, "no such participant in the room")
        }
        RoomServiceError::Contended(_) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the room's metadata kept changing; retry",
        ),
        e => {
            tracing::warn!(error = %e, "room service error in an API call");
            err(
                StatusCode::BAD_GATEWAY,
                "the LiveKit server did not take the change",
            )
        }
    }
}

/// A JSON object of allowed keys with boolean (or, for `vb.*`, the caption language and `ns.model`,
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
                NS_MODEL => v
                    .as_str()
                    .is_some_and(|s| s.len() < 32 && crate::config::NsModel::parse(s).is_some()),
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
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/settings",
    operation_id = "set_room_settings",
    tag = "settings",
    summary = "Room-wide switches (other keys of the room's metadata kept)",
    params(("room" = String, Path, description = "The room")),
    request_body = schema::RoomSettings,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The room's switches now", body = schema::RoomSettingsResult),
        (status = 400, description = "An unknown setting or a bad value", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        (status = 404, description = "No such room", body = schema::ErrorBody),
        schema::LiveKitErrors,
    )
)]
pub(super) async fn room(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(room): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
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
/// `vb.image` must be an image uploaded to this room (its id) or an allow-listed https URL
/// (`SourcePolicy::check`); a participant not in the room is 404.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/participants/{identity}/settings",
    operation_id = "set_participant_settings",
    tag = "settings",
    summary = "A participant's switches, set as their attributes",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    request_body = schema::ParticipantSettings,
    security(("api_key" = [])),
    responses(
        (
            status = 200,
            description = "The attributes set",
            body = schema::ParticipantSettingsResult
        ),
        (status = 400, description = "An unknown setting or a bad value", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        (status = 404, description = "No such room or participant", body = schema::ErrorBody),
        schema::LiveKitErrors,
    )
)]
pub(super) async fn participant(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path((room, identity)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
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
    if let Some(image) = attributes.get(VB_IMAGE) {
        state
            .backgrounds
            .check(&room, image)
            .map_err(|e| err(StatusCode::BAD_REQUEST, format!("bad vb.image: {e}")))?;
    }
    state
        .room_service
        .set_attributes(&room, &identity, &attributes)
        .await
        .map_err(room_service_error)?;
    Ok(Json(json!({"room": room, "identity": identity, "settings": attributes})).into_response())
}

/// Creates `dir` (and missing parents) readable by this user only.
fn private_dir(dir: &FsPath) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Deletes uploads older than `expiry` (by modification time: a repeated upload refreshes it)
/// in every room's folder, temporary files of uploads that died, and room folders left empty.
/// Links and other odd entries are left alone. Called at API start and on each upload.
pub(super) fn sweep_expired_backgrounds(policy: &SourcePolicy, expiry: Option<Duration>) {
    let Ok(rooms) = std::fs::read_dir(policy.uploads_root()) else {
        return;
    };
    let now = SystemTime::now();
    let mut removed = 0usize;
    for room in rooms.flatten() {
        if !room.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(room.path()) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(meta) = file.path().symlink_metadata() else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let name = file.file_name();
            let name = name.to_string_lossy();
            let expired = if is_upload_file_name(&name) {
                expiry.is_some_and(|e| age > e)
            } else {
                name.ends_with(".tmp") && age > STALE_TEMP
            };
            if expired && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
        // Only succeeds when empty.
        let _ = std::fs::remove_dir(room.path());
    }
    if removed > 0 {
        tracing::info!(removed, "expired background uploads deleted");
    }
}

/// Uploads in `dir`: how many and their bytes.
fn usage(dir: &FsPath) -> (u64, u64) {
    let Ok(files) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    files
        .flatten()
        .filter(|f| is_upload_file_name(&f.file_name().to_string_lossy()))
        .filter_map(|f| f.path().symlink_metadata().ok())
        .filter(|m| m.file_type().is_file())
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}

#[derive(Debug)]
enum Stored {
    New,
    Again,
}

/// Stores `bytes` as `name` in `dir` (0700) as a 0600 file, within the room's quota; an image
/// already there is kept (its age refreshed) and costs nothing.
fn store_upload(
    dir: &FsPath,
    name: &str,
    bytes: &[u8],
    max_count: u32,
    max_bytes: u64,
) -> Result<Stored, ApiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot store an uploaded background");
        err(
            StatusCode::INSUFFICIENT_STORAGE,
            "the background could not be stored",
        )
    };
    private_dir(dir).map_err(io)?;
    let path = dir.join(name);
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file())
    {
        std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(io)?;
        return Ok(Stored::Again);
    }
    let (count, used) = usage(dir);
    if count + 1 > u64::from(max_count) {
        return Err(err(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("this room keeps at most {max_count} background images"),
        ));
    }
    if used + bytes.len() as u64 > max_bytes {
        return Err(err(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("this room's background images may take at most {max_bytes} bytes"),
        ));
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(Stored::New)
}

/// `POST /v1/rooms/{room}/backgrounds` with a PNG or JPEG body (at most
/// `video::background::MAX_BYTES`): checked like any background, stored in the room's upload
/// folder by content hash within the room's quota (`api.background_max_count`,
/// `api.background_max_bytes`; 507 past it); the answer's `image` is the id to use as
/// `vb.image` (`upload:<sha256>.png|jpg`), never a server path.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/backgrounds",
    operation_id = "upload_background",
    tag = "settings",
    summary = "Uploads a background image (PNG or JPEG, at most 10 MiB) for `vb.image`",
    params(("room" = String, Path, description = "The room")),
    request_body(content(("image/png"), ("image/jpeg"))),
    security(("api_key" = [])),
    responses(
        (
            status = 200,
            description = "The same image was stored already",
            body = schema::BackgroundUploaded
        ),
        (status = 201, description = "Stored", body = schema::BackgroundUploaded),
        (status = 400, description = "Not an acceptable image", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room", body = schema::ErrorBody),
        (status = 413, description = "Too large"),
        (
            status = 507,
            description = "The room's quota is spent, or storing failed",
            body = schema::ErrorBody
        ),
    )
)]
pub(super) async fn upload_background(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    room_allowed(&who, &room)?;
    // Decoded under the process's decode permits, like every background.
    let (width, height) = crate::video::background::check_bounded(body.clone())
        .await
        .map_err(|e| match e {
            crate::video::background::BackgroundError::TooLarge => {
                err(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            e => err(StatusCode::BAD_REQUEST, e.to_string()),
        })?;
    let bytes = body;
    let ext = match image::guess_format(&bytes) {
        Ok(image::ImageFormat::Png) => "png",
        _ => "jpg",
    };
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = upload_id(&digest, ext);
    let name = format!("{digest}.{ext}");
    let dir = state.backgrounds.upload_dir(&room);
    // One upload at a time in the process: the quota is counted and spent atomically.
    let _one = state.uploads.lock().await;
    let limits = state.limits.clone();
    let policy = state.backgrounds.clone();
    let len = bytes.len();
    let stored = tokio::task::spawn_blocking(move || {
        sweep_expired_backgrounds(&policy, limits.background_expiry);
        store_upload(
            &dir,
            &name,
            &bytes,
            limits.background_max_count,
            limits.background_max_bytes,
        )
    })
    .await
    .map_err(|_| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storing the image failed",
        )
    })??;
    let status = match stored {
        Stored::New => StatusCode::CREATED,
        Stored::Again => StatusCode::OK,
    };
    Ok((
        status,
        Json(json!({
            "image": id,
            "bytes": len,
            "width": width,
            "height": height,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn policy(name: &str) -> (SourcePolicy, PathBuf) {
        let root = std::env::temp_dir().join(format!("api-bg-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        (
            SourcePolicy::new(root.join("backgrounds"), Vec::new()),
            root,
        )
    }

    fn name(n: u8, ext: &str) -> String {
        format!("{}.{ext}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn uploads_are_private_within_quota_and_idempotent() {
        let (policy, root) = policy("quota");
        let dir = policy.upload_dir("weekly");
        assert!(matches!(
            store_upload(&dir, &name(1, "png"), &[1; 100], 2, 250),
            Ok(Stored::New)
        ));
        let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(name(1, "png"))), 0o600);
        assert!(matches!(
            store_upload(&dir, &name(1, "png"), &[1; 100], 2, 250),
            Ok(Stored::Again)
        ));
        // Bytes: 100 + 200 > 250.
        let e = store_upload(&dir, &name(2, "png"), &[2; 200], 2, 250).unwrap_err();
        assert_eq!(e.0, StatusCode::INSUFFICIENT_STORAGE);
        assert!(store_upload(&dir, &name(2, "jpg"), &[2; 100], 2, 250).is_ok());
        // Count: a third image.
        let e = store_upload(&dir, &name(3, "png"), &[3; 10], 2, 1000).unwrap_err();
        assert_eq!(e.0, StatusCode::INSUFFICIENT_STORAGE);
        // Another room has its own quota.
        assert!(
            store_upload(
                &policy.upload_dir("board"),
                &name(3, "png"),
                &[3; 10],
                2,
                1000
            )
            .is_ok()
        );
        // What is stored is what the policy accepts as vb.image, for that room only.
        let id = upload_id(&"01".repeat(32), "png");
        assert!(policy.check("weekly", &id).is_ok());
        assert!(policy.check("board", &id).is_err());
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn the_model_switch_takes_only_known_models() {
        let body = |v: Value| serde_json::json!({ "ns.model": v });
        for ok in ["rnnoise", "deepfilternet", "DeepFilterNet"] {
            assert!(settings(&body(ok.into()), &ROOM_KEYS).is_ok(), "{ok}");
            assert!(
                settings(&body(ok.into()), &PARTICIPANT_KEYS).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            Value::from(""),
            Value::from("deepfilternet2"),
            Value::from("d".repeat(4096)),
            Value::from("rnnoise\u{202e}"),
            Value::from(true),
            Value::from(3),
        ] {
            assert!(settings(&body(bad.clone()), &ROOM_KEYS).is_err(), "{bad}");
        }
    }

    #[test]
    fn expired_uploads_and_dead_temporaries_are_swept() {
        let (policy, root) = policy("sweep");
        let dir = policy.upload_dir("weekly");
        store_upload(&dir, &name(1, "png"), &[1; 10], 20, 1000).unwrap();
        store_upload(&dir, &name(2, "png"), &[2; 10], 20, 1000).unwrap();
        std::fs::write(dir.join(".x.tmp"), b"partial").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
        for f in [name(1, "png"), ".x.tmp".into()] {
            std::fs::File::options()
                .append(true)
                .open(dir.join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        // No expiry: uploads are kept, dead temporaries go.
        sweep_expired_backgrounds(&policy, None);
        assert!(dir.join(name(1, "png")).exists());
        assert!(!dir.join(".x.tmp").exists());
        sweep_expired_backgrounds(&policy, Some(Duration::from_secs(2 * 86_400)));
        assert!(!dir.join(name(1, "png")).exists(), "older than the expiry");
        assert!(dir.join(name(2, "png")).exists(), "recent");
        // A re-upload refreshes the age.
        store_upload(&dir, &name(2, "png"), &[2; 10], 20, 1000).unwrap();
        // A room whose uploads all expired loses its folder.
        let board = policy.upload_dir("board");
        store_upload(&board, &name(3, "png"), &[3; 10], 20, 1000).unwrap();
        std::fs::File::options()
            .append(true)
            .open(board.join(name(3, "png")))
            .unwrap()
            .set_modified(old)
            .unwrap();
        sweep_expired_backgrounds(&policy, Some(Duration::from_secs(86_400)));
        assert!(!board.exists());
        assert!(dir.exists());
        std::fs::remove_dir_all(root).ok();
    }
}
