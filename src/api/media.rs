//! `/v1/media-jobs`: the voice and video message queue for the platform's backend. Jobs are
//! not scoped to a room, so only an operator key for every room (`rooms = ["*"]`) may use them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, every_room, store};
use crate::captions::journal::unix_ms;
use crate::store::JobStatus;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnqueueRequest {
    /// The message the attachment belongs to (one job per message).
    message_id: String,
    /// `file:<path under media_messages.dir>` or `s3:<key in the recordings' bucket>`.
    source: String,
}

#[utoipa::path(
    post,
    path = "/v1/media-jobs",
    operation_id = "enqueue_media_job",
    tag = "media messages",
    summary = "Queue a message's audio or video attachment",
    request_body = EnqueueRequest,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued (`queued` false: it was already)", body = schema::MediaQueued),
        (status = 400, description = "A malformed message id or source", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn enqueue(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Json(req): Json<EnqueueRequest>,
) -> Result<Response, ApiError> {
    every_room(&who, "media jobs")?;
    crate::media_messages::check_job(&req.message_id, &req.source)
        .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let queued = store(&state)?
        .enqueue_media(&req.message_id, &req.source, unix_ms() as i64)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message_id": req.message_id, "queued": queued})),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StatusFilter {
    /// `queued`, `running`, `done` or `failed`; all when absent.
    #[param(value_type = Option<String>)]
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/media-jobs",
    operation_id = "list_media_jobs",
    tag = "media messages",
    summary = "Jobs, most recently changed first (at most 1000)",
    params(StatusFilter),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Jobs", body = [crate::store::MediaJob]),
        (status = 400, description = "An unknown status", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Query(q): Query<StatusFilter>,
) -> Result<Response, ApiError> {
    every_room(&who, "media jobs")?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(store(&state)?.media_jobs(status).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/media-jobs/{message_id}",
    operation_id = "get_media_job",
    tag = "media messages",
    summary = "One message's job: its state, and once done its result",
    params(("message_id" = String, Path, description = "The message's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The job (`result` is the JSON of what it produced)", body = crate::store::MediaJob),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        (status = 404, description = "No job for that message", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    every_room(&who, "media jobs")?;
    match store(&state)?.media_job(&message_id).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(err(StatusCode::NOT_FOUND, "no job for that message")),
    }
}

#[utoipa::path(
    post,
    path = "/v1/media-jobs/{message_id}/rerun",
    operation_id = "rerun_media_job",
    tag = "media messages",
    summary = "Queue a job again now, whatever happened to it",
    params(("message_id" = String, Path, description = "The message's id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued again", body = schema::MediaQueued),
        schema::NoApiKey,
        (status = 403, description = "The key is not for every room", body = schema::ErrorBody),
        (status = 404, description = "No job for that message", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(super) async fn rerun(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    every_room(&who, "media jobs")?;
    if !store(&state)?
        .requeue_media(&message_id, unix_ms() as i64)
        .await?
    {
        return Err(err(StatusCode::NOT_FOUND, "no job for that message"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"message_id": message_id, "queued": true})),
    )
        .into_response())
}
