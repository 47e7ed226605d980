//! Call quality and usage: a meeting's samples and worst moments, its participants'
//! engagement, and usage across meetings. Meetings are scoped like transcripts (another room's
//! meeting is answered as missing); usage needs a room the key may use, or a key for every room.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, room_allowed, store, visible_meeting};
use crate::features::call_quality::moments::{self, Moment};
use crate::store::{Engagement, Meeting, QualitySample, Usage};

/// Longest usage range one call may ask for.
const MAX_RANGE_MS: i64 = 366 * 86_400_000;
/// Usage covers this much before `to` when `from` is not given.
const DEFAULT_RANGE_MS: i64 = 30 * 86_400_000;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct QualityReport {
    meeting: Meeting,
    /// Every stored sample, by participant, track and time.
    samples: Vec<QualitySample>,
    /// Runs of bad samples under the configured thresholds, in time order.
    moments: Vec<Moment>,
    /// The summary's "Call quality" section (empty when nothing was notable).
    summary: String,
}

#[utoipa::path(
    get,
    path = "/v1/meetings/{id}/quality",
    operation_id = "get_meeting_quality",
    tag = "meetings",
    summary = "A meeting's call quality: samples per received track and the worst moments",
    params(("id" = String, Path, description = "The meeting's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Samples and moments", body = QualityReport),
        schema::NoApiKey,
        (status = 404, description = "No such meeting in the key's rooms", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(crate) async fn meeting_quality(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<QualityReport>, ApiError> {
    let meeting = visible_meeting(&state, &who, &id).await?;
    let samples = store(&state)?.quality_samples(&meeting.id).await?;
    let config = &state.config.call_quality;
    Ok(Json(QualityReport {
        moments: moments::moments(&samples, config),
        summary: moments::summary_section(&samples, config),
        samples,
        meeting,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/meetings/{id}/engagement",
    operation_id = "get_meeting_engagement",
    tag = "meetings",
    summary = "Each participant's speaking, camera and screen-share time, joins and leaves",
    params(("id" = String, Path, description = "The meeting's id")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Engagement by participant", body = [Engagement]),
        schema::NoApiKey,
        (status = 404, description = "No such meeting in the key's rooms", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(crate) async fn meeting_engagement(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Engagement>>, ApiError> {
    let meeting = visible_meeting(&state, &who, &id).await?;
    Ok(Json(store(&state)?.engagement(&meeting.id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// Meetings started at or after this, Unix ms; 30 days before `to` when absent.
    from: Option<i64>,
    /// Meetings started before this, Unix ms; now when absent. At most 366 days after `from`.
    to: Option<i64>,
    /// One room; required for a key limited to some rooms.
    room: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/analytics/usage",
    operation_id = "get_usage",
    tag = "meetings",
    summary = "Usage across meetings: durations, peak hours and weekdays, rooms, bandwidth, engagement",
    params(UsageParams),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Usage in the range", body = Usage),
        (status = 400, description = "A bad range", body = schema::ErrorBody),
        schema::NoApiKey,
        (status = 403, description = "The key may not use the room, or must name one", body = schema::ErrorBody),
        schema::StoreErrors,
    )
)]
pub(crate) async fn usage(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Query(p): Query<UsageParams>,
) -> Result<Json<Usage>, ApiError> {
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
    let to =
        p.to.unwrap_or_else(|| crate::captions::journal::unix_ms() as i64);
    let from = p.from.unwrap_or(to.saturating_sub(DEFAULT_RANGE_MS));
    if from < 0 || to <= from || to - from > MAX_RANGE_MS {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "from and to must be Unix ms with from < to, at most 366 days apart",
        ));
    }
    Ok(Json(
        store(&state)?.usage(from, to, p.room.as_deref()).await?,
    ))
}
