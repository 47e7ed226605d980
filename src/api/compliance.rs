//! Retention and the compliance export through the API: a retention pass on demand (a dry run
//! unless asked otherwise), and a meeting's or a conversation's archive. Each export is written
//! in the audit log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, every_room, store};
use crate::captions::journal::unix_ms;
use crate::store::AuditEntry;

/// Writes an export in the audit log: who took which archive.
async fn audited(
    store: &crate::store::Store,
    room: &str,
    who: &Caller,
    id: &str,
) -> Result<(), ApiError> {
    store
        .add_audit(&AuditEntry {
            room: room.to_string(),
            at_ms: unix_ms() as i64,
            actor: format!("key:{}", who.id),
            action: "export-archive".into(),
            target: Some(id.to_string()),
            result: "ok".into(),
        })
        .await?;
    Ok(())
}

fn tar(archive: Vec<u8>, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        archive,
    )
        .into_response()
}

fn archive_error(e: crate::compliance::archive::ArchiveError) -> ApiError {
    match e {
        crate::compliance::archive::ArchiveError::Store(e) => e.into(),
        other => err(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionRequest {
    /// Only count what is past its time (the default); `false` deletes it.
    #[serde(default = "yes")]
    #[schema(default = true)]
    dry_run: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(
    post,
    path = "/v1/retention/run",
    operation_id = "run_retention",
    tag = "compliance",
    summary = "A retention pass now: what is past `[retention]`, counted or deleted",
    request_body = RetentionRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What was deleted (or would be)", body = crate::compliance::retention::Report),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn retention(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Json(req): Json<RetentionRequest>,
) -> Result<Response, ApiError> {
    every_room(&who, "retention passes")?;
    let report = crate::compliance::retention::run_configured(
        &state.config,
        store(&state)?,
        state.recorder.as_ref(),
        req.dry_run,
    )
    .await?;
    Ok(Json(report).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/meetings/{id}/archive",
    operation_id = "meeting_archive",
    tag = "compliance",
    summary = "A meeting's compliance export (tar)",
    params(("id" = String, Path, description = "The meeting's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "meeting.json, transcript.vtt, transcript.json, summary.txt, messages.json, media.json, recordings.json, audit.json", content_type = "application/x-tar", body = Vec<u8>),
        schema::NoApiKey,
        (status = 404, description = "No such meeting in the key's rooms", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn meeting_archive(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meeting = super::visible_meeting(&state, &who, &id).await?;
    let store = store(&state)?;
    let archive = crate::compliance::archive::meeting(store, state.recorder.as_ref(), &id)
        .await
        .map_err(archive_error)?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such meeting"))?;
    audited(store, &meeting.room, &who, &id).await?;
    Ok(tar(archive, &id))
}

#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/archive",
    operation_id = "conversation_archive",
    tag = "compliance",
    summary = "A conversation's compliance export (tar)",
    params(("id" = String, Path, description = "The conversation's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "conversation.json, messages.json, media.json", content_type = "application/x-tar", body = Vec<u8>),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        (status = 404, description = "No messages in that conversation", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn conversation_archive(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    every_room(&who, "conversations' exports")?;
    let store = store(&state)?;
    let archive = crate::compliance::archive::conversation(store, &id)
        .await
        .map_err(archive_error)?
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no messages in that conversation"))?;
    audited(store, "*", &who, &id).await?;
    Ok(tar(archive, "conversation"))
}
