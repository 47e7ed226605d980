//! The waiting room's calls: its settings, who waits (and since when), admit one or all, deny.
//! Who waits holds a token without rights and the `meeting.waiting` attribute (see
//! `api::tokens`); admitting gives the rights a participant token carries and clears it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Principal, control, is_agent, room_service_error};
use crate::api::openapi::schema;
use crate::api::{ApiError, ApiState, err};
use crate::meeting::WaitingRoom;
use crate::meeting::roles::Action;
use crate::protocol::{MEETING_WAITING, MEETING_WAITING_ROOM, MEETING_WAITING_SINCE};

/// Whether a participant (LiveKit's `ParticipantInfo` JSON) is waiting to be admitted.
pub fn is_waiting(participant: &Value) -> bool {
    participant["attributes"][MEETING_WAITING] == "true"
}

/// People in the meeting who count against its capacity: not agents, not waiting.
pub fn admitted(participants: &[Value]) -> usize {
    participants
        .iter()
        .filter(|p| !is_agent(p) && !is_waiting(p))
        .count()
}

/// When `participant` started waiting (Unix ms): the agent's attribute, else its join time.
fn waiting_since_ms(participant: &Value) -> i64 {
    participant["attributes"][MEETING_WAITING_SINCE]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            participant["joined_at_ms"]
                .as_str()
                .and_then(|s| s.parse().ok())
        })
        .or_else(|| {
            participant["joined_at"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .map(|s| s * 1000)
        })
        .unwrap_or_default()
}

/// `PUT /v1/rooms/{room}/waiting-room` `{"enabled", "message", "capacity", "auto_admit_domains",
/// "auto_admit_identities", "auto_admit_signed_in"}`: the whole settings, checked.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/waiting-room",
    operation_id = "set_waiting_room",
    tag = "waiting room",
    summary = "The waiting room's settings (the whole of them)",
    params(("room" = String, Path, description = "The room")),
    request_body = crate::meeting::WaitingRoom,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Set", body = schema::WaitingRoomResult),
        (status = 400, description = "Bad settings", body = schema::ErrorBody),
        schema::ControlRefusals,
    )
)]
pub(in crate::api) async fn settings(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(settings): Json<WaitingRoom>,
) -> Result<Response, ApiError> {
    settings
        .check()
        .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    let name = if settings.enabled {
        "waiting-room-on"
    } else {
        "waiting-room-off"
    };
    control(
        &state,
        &who,
        &room,
        name,
        (Action::RunMeeting, None),
        |_| async {
            let value = serde_json::to_value(&settings).expect("settings serialise");
            state
                .room_service
                .set_switches(&room, [(MEETING_WAITING_ROOM.to_string(), value.clone())])
                .await
                .map_err(room_service_error)?;
            Ok(json!({ "waiting_room": value }))
        },
    )
    .await
}

/// `GET /v1/rooms/{room}/waiting`: who waits, longest first, with the time they started.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/waiting",
    operation_id = "list_waiting",
    tag = "waiting room",
    summary = "Who waits, longest first",
    params(("room" = String, Path, description = "The room")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Who waits", body = schema::WaitingList),
        schema::ControlRefusals,
    )
)]
pub(in crate::api) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    super::authorize(&state, &who, &room, Action::RunMeeting, None).await?;
    let participants = state
        .room_service
        .participants(&room)
        .await
        .map_err(room_service_error)?;
    let mut waiting: Vec<Value> = participants
        .iter()
        .filter(|p| is_waiting(p))
        .map(|p| json!({"identity": p["identity"], "name": p["name"], "since_ms": waiting_since_ms(p)}))
        .collect();
    waiting.sort_by_key(|w| w["since_ms"].as_i64());
    Ok(Json(json!({ "waiting": waiting, "admitted": admitted(&participants) })).into_response())
}

/// The rights a participant token carries, given to one who waited.
fn admitted_permission() -> Value {
    json!({"can_subscribe": true, "can_publish": true, "can_publish_data": true, "can_publish_sources": []})
}

/// Admits the waiting participants among `identities` (all who wait when None) while the
/// capacity allows; answers who was admitted.
async fn admit(
    state: &ApiState,
    room: &str,
    identities: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let participants = state
        .room_service
        .participants(room)
        .await
        .map_err(room_service_error)?;
    let capacity = super::meeting_state(state, room)
        .await?
        .waiting_room
        .capacity
        .map(|c| c as usize);
    let waiting: Vec<&Value> = participants
        .iter()
        .filter(|p| is_waiting(p) && identities.is_none_or(|i| p["identity"] == i))
        .collect();
    if let Some(identity) = identities
        && waiting.is_empty()
    {
        return Err(err(
            StatusCode::CONFLICT,
            format!("{identity:?} is not waiting"),
        ));
    }
    let mut done = Vec::new();
    for (inside, participant) in (admitted(&participants)..).zip(waiting) {
        if capacity.is_some_and(|c| inside >= c) {
            if done.is_empty() {
                return Err(err(StatusCode::CONFLICT, "the meeting is full"));
            }
            break;
        }
        let identity = participant["identity"].as_str().unwrap_or_default();
        state
            .room_service
            .set_permission(room, identity, admitted_permission())
            .await
            .map_err(room_service_error)?;
        let cleared = [
            (MEETING_WAITING.to_string(), String::new()),
            (MEETING_WAITING_SINCE.to_string(), String::new()),
        ];
        state
            .room_service
            .set_attributes(room, identity, &cleared.into_iter().collect())
            .await
            .map_err(room_service_error)?;
        done.push(identity.to_string());
    }
    Ok(done)
}

/// `POST /v1/rooms/{room}/waiting/{identity}/admit`.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/waiting/{identity}/admit",
    operation_id = "admit_participant",
    tag = "waiting room",
    summary = "Admits a waiting participant",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Admitted", body = schema::Admitted),
        schema::ControlRefusals,
        (
            status = 409,
            description = "Not waiting, or the meeting is full",
            body = schema::ErrorBody
        ),
    )
)]
pub(in crate::api) async fn admit_one(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "admit",
        (Action::Moderate, Some(&identity)),
        |_| async {
            let admitted = admit(&state, &room, Some(&identity)).await?;
            Ok(json!({ "admitted": admitted }))
        },
    )
    .await
}

/// `POST /v1/rooms/{room}/waiting/admit-all`: everyone waiting, as far as the capacity allows.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/waiting/admit-all",
    operation_id = "admit_all",
    tag = "waiting room",
    summary = "Admits everyone waiting, as far as the capacity allows",
    params(("room" = String, Path, description = "The room")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Who was admitted", body = schema::Admitted),
        schema::ControlRefusals,
        (status = 409, description = "The meeting is full", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn admit_all(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "admit-all",
        (Action::RunMeeting, None),
        |_| async {
            let admitted = admit(&state, &room, None).await?;
            Ok(json!({ "admitted": admitted }))
        },
    )
    .await
}

/// `POST /v1/rooms/{room}/waiting/{identity}/deny`: the participant is sent away.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/waiting/{identity}/deny",
    operation_id = "deny_participant",
    tag = "waiting room",
    summary = "Sends a waiting participant away",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Denied", body = schema::Denied),
        schema::ControlRefusals,
        (status = 409, description = "Not waiting", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn deny(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "deny",
        (Action::Moderate, Some(&identity)),
        |_| async {
            let participant = super::find(&state, &room, &identity).await?;
            if !is_waiting(&participant) {
                return Err(err(
                    StatusCode::CONFLICT,
                    format!("{identity:?} is not waiting"),
                ));
            }
            state
                .room_service
                .remove_participant(&room, &identity)
                .await
                .map_err(room_service_error)?;
            Ok(json!({ "denied": identity }))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_and_admitted_people_are_told_apart() {
        let people = [
            json!({"identity": "ann", "attributes": {"meeting.waiting": "true",
                   "meeting.waiting_since": "1700000000000"}}),
            json!({"identity": "bob", "attributes": {}, "joined_at": "1700000001"}),
            json!({"identity": "agent-1", "kind": "AGENT"}),
            json!({"identity": "cy", "attributes": {"meeting.waiting": "false"}}),
        ];
        assert!(is_waiting(&people[0]) && !is_waiting(&people[1]) && !is_waiting(&people[3]));
        assert_eq!(admitted(&people), 2, "bob and cy; the agent does not count");
        assert_eq!(waiting_since_ms(&people[0]), 1_700_000_000_000);
        assert_eq!(waiting_since_ms(&people[1]), 1_700_000_001_000);
    }
}
