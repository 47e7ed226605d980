//! Breakout rooms: open N rooms for a meeting and spread its participants over them (by hand,
//! evenly or at random), move one, broadcast to all, a timer with a warning, close all and bring
//! everyone back. A participant is moved with LiveKit's `MoveParticipant` where the server has
//! it; otherwise it gets a token for its new room in a data message on [`MOVE_TOPIC`]
//! (`{"room", "token"}`, to it alone), which its client follows. The agent is dispatched into
//! every breakout like into any new room; each breakout's metadata names the main room.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{Principal, control, is_agent, room_service_error};
use crate::api::openapi::schema;
use crate::api::tokens::MAX_ROOM_CHARS;
use crate::api::{ApiError, ApiState, err};
use crate::captions::journal::unix_ms;
use crate::meeting::MeetingState;
use crate::meeting::breakouts::{Breakouts, MAX_BREAKOUTS, Spread, assign};
use crate::meeting::roles::{Action, Roles};
use crate::protocol::{
    MEETING_BREAKOUT_OF, MEETING_BREAKOUTS, MEETING_ROLE_ATTRIBUTE, MEETING_ROLES,
};

/// Data topic of a move the client carries out itself: `{"room", "token"}`.
pub const MOVE_TOPIC: &str = "meeting.move";
/// Data topic of hosts' messages to every breakout, and of the timer's warning.
pub const BROADCAST_TOPIC: &str = "meeting.broadcast";
/// The longest a timer may run.
const MAX_DURATION: Duration = Duration::from_secs(4 * 3600);
/// Longest broadcast message, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Most hand-made assignments in one call.
const MAX_ASSIGNMENTS: usize = 1000;
/// How long closed breakout rooms stay, so that clients moving by token leave by themselves.
const CLOSE_GRACE: Duration = Duration::from_secs(15);
/// Breakout timers waiting in this process at most (each holds a task until its end, and a
/// closed set's timer waits on, so opening and closing in a loop must not pile them up).
const MAX_TIMERS: usize = 1024;

static TIMERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One of the [`MAX_TIMERS`], given back when dropped.
struct TimerSlot;

impl TimerSlot {
    fn take() -> Option<Self> {
        use std::sync::atomic::Ordering::SeqCst;
        TIMERS
            .fetch_update(SeqCst, SeqCst, |n| (n < MAX_TIMERS).then_some(n + 1))
            .ok()
            .map(|_| TimerSlot)
    }
}

impl Drop for TimerSlot {
    fn drop(&mut self) {
        TIMERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The main room's roles and open breakouts.
async fn current(state: &ApiState, room: &str) -> Result<(Roles, Option<Breakouts>), ApiError> {
    let metadata = state
        .room_service
        .room_metadata(room)
        .await
        .map_err(room_service_error)?;
    let meeting = MeetingState::from_metadata(&metadata);
    Ok((meeting.roles, meeting.breakouts))
}

/// Moves `participant` (LiveKit's `ParticipantInfo` JSON) from `from` to `to`: how it went.
async fn move_to(
    state: &ApiState,
    from: &str,
    to: &str,
    participant: &Value,
    roles: &Roles,
) -> Result<&'static str, ApiError> {
    let identity = participant["identity"].as_str().unwrap_or_default();
    match state
        .room_service
        .move_participant(from, identity, to)
        .await
    {
        Ok(()) => return Ok("moved"),
        Err(e) => {
            tracing::debug!(error = %e, "MoveParticipant unavailable: the client moves by token")
        }
    }
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let name = participant["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(identity);
    let token = AccessToken::with_api_key(&state.livekit_api_key, &state.livekit_api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_ttl(state.token_max_ttl)
        .with_attributes([(MEETING_ROLE_ATTRIBUTE, roles.of(identity).as_str())])
        .with_grants(VideoGrants {
            room_join: true,
            room: to.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(false),
            ..Default::default()
        })
        .to_jwt()
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the token"))?;
    let payload = json!({"room": to, "token": token}).to_string();
    state
        .room_service
        .send_data(
            from,
            MOVE_TOPIC,
            payload.as_bytes(),
            &[identity.to_string()],
        )
        .await
        .map_err(room_service_error)?;
    Ok("token")
}

/// Everyone but agents in `room` now.
async fn people_in(state: &ApiState, room: &str) -> Result<Vec<Value>, ApiError> {
    match state.room_service.participants(room).await {
        Ok(list) => Ok(list.into_iter().filter(|p| !is_agent(p)).collect()),
        Err(crate::livekit::room_service::RoomServiceError::NoSuchRoom(_)) => Ok(Vec::new()),
        Err(e) => Err(room_service_error(e)),
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(as = OpenBreakoutsRequest)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct OpenRequest {
    /// How many rooms (1 to 16).
    count: usize,
    #[serde(default = "even")]
    #[schema(default = "even")]
    spread: Spread,
    /// Identity -> room number (1..=count), before the spread.
    #[serde(default)]
    assignments: BTreeMap<String, usize>,
    /// Closes them after this long, warning `warning_secs` before.
    duration_secs: Option<u64>,
    #[serde(default = "minute")]
    #[schema(default = 60)]
    warning_secs: u64,
}

fn even() -> Spread {
    Spread::Even
}

fn minute() -> u64 {
    60
}

/// `POST /v1/rooms/{room}/breakouts`: opens `count` breakout rooms and moves the meeting's
/// participants (not hosts and co-hosts, unless assigned by hand) into them.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/breakouts",
    operation_id = "open_breakouts",
    tag = "breakouts",
    summary = "Opens breakout rooms and moves the participants into them",
    params(("room" = String, Path, description = "The room")),
    request_body = OpenRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Opened", body = schema::BreakoutsOpened),
        (
            status = 400,
            description = "A bad count, assignment or duration",
            body = schema::ErrorBody
        ),
        schema::ControlRefusals,
        (status = 409, description = "Breakout rooms are open already", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn open(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(req): Json<OpenRequest>,
) -> Result<Response, ApiError> {
    if !(1..=MAX_BREAKOUTS).contains(&req.count) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("count: 1 to {MAX_BREAKOUTS} rooms"),
        ));
    }
    if Breakouts::room_name(&room, req.count).chars().count() > MAX_ROOM_CHARS {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "the room name is too long for breakouts",
        ));
    }
    if req.assignments.len() > MAX_ASSIGNMENTS
        || req.assignments.values().any(|&n| n == 0 || n > req.count)
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!(
                "assignments: at most {MAX_ASSIGNMENTS}, rooms numbered 1 to {}",
                req.count
            ),
        ));
    }
    for identity in req.assignments.keys() {
        state
            .identities
            .check(identity)
            .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    }
    let duration = req.duration_secs.map(Duration::from_secs);
    if duration.is_some_and(|d| d.is_zero() || d > MAX_DURATION) {
        return Err(err(StatusCode::BAD_REQUEST, "duration_secs: 1 s to 4 h"));
    }
    control(&state, &who, &room, "breakouts-open", (Action::RunMeeting, None), |_| async {
        let slot = match duration {
            Some(_) => Some(TimerSlot::take().ok_or_else(|| {
                err(StatusCode::SERVICE_UNAVAILABLE, "too many breakout timers running; retry later")
            })?),
            None => None,
        };
        let (roles, open) = current(&state, &room).await?;
        if open.is_some() {
            return Err(err(StatusCode::CONFLICT, "breakout rooms are open already"));
        }
        let present = people_in(&state, &room).await?;
        let movable: Vec<String> = present
            .iter()
            .filter_map(|p| p["identity"].as_str())
            .filter(|i| !roles.of(i).moderates())
            .map(str::to_string)
            .collect();
        let manual = req.assignments.iter().map(|(i, n)| (i.clone(), n - 1)).collect();
        let now = unix_ms();
        let assignments = assign(&movable, req.count, req.spread, &manual, now);
        let breakouts = Breakouts {
            rooms: (0..req.count).map(|i| Breakouts::room_name(&room, i)).collect(),
            assignments,
            ends_at_ms: duration.map(|d| now + d.as_millis() as u64),
        };
        let metadata = json!({ MEETING_BREAKOUT_OF: room, MEETING_ROLES: roles.to_value() }).to_string();
        for name in &breakouts.rooms {
            state
                .room_service
                .create_room(name, &metadata)
                .await
                .map_err(room_service_error)?;
        }
        write(&state, &room, Some(&breakouts)).await?;
        let mut moved = BTreeMap::new();
        for participant in &present {
            let identity = participant["identity"].as_str().unwrap_or_default();
            if let Some(&i) = breakouts.assignments.get(identity) {
                let how = move_to(&state, &room, &breakouts.rooms[i], participant, &roles).await?;
                moved.insert(identity.to_string(), how);
            }
        }
        if let (Some(duration), Some(slot)) = (duration, slot) {
            let warning = Duration::from_secs(req.warning_secs).min(duration);
            let (state, room, breakouts) = (state.clone(), room.clone(), breakouts.clone());
            tokio::spawn(async move {
                let _slot = slot;
                timer(state, room, breakouts, duration, warning).await
            });
        }
        Ok(json!({"rooms": breakouts.rooms, "assignments": numbered(&breakouts), "moved": moved,
                  "ends_at_ms": breakouts.ends_at_ms}))
    })
    .await
}

/// Identity -> room number (1-based), as the API speaks.
fn numbered(breakouts: &Breakouts) -> BTreeMap<&str, usize> {
    breakouts
        .assignments
        .iter()
        .map(|(i, n)| (i.as_str(), n + 1))
        .collect()
}

async fn write(
    state: &ApiState,
    room: &str,
    breakouts: Option<&Breakouts>,
) -> Result<(), ApiError> {
    let value = breakouts.map_or(Value::Null, |b| {
        serde_json::to_value(b).expect("serialises")
    });
    state
        .room_service
        .set_switches(room, [(MEETING_BREAKOUTS.to_string(), value)])
        .await
        .map_err(room_service_error)
}

/// Warns every breakout `warning` before the end, then closes them, unless they were closed
/// (or others opened) meanwhile. Runs in this process: a restart forgets it.
async fn timer(
    state: Arc<ApiState>,
    room: String,
    breakouts: Breakouts,
    duration: Duration,
    warning: Duration,
) {
    tokio::time::sleep(duration - warning).await;
    let still_open = |state: Arc<ApiState>, room: String, breakouts: Breakouts| async move {
        matches!(current(&state, &room).await, Ok((_, Some(b))) if b.rooms == breakouts.rooms && b.ends_at_ms == breakouts.ends_at_ms)
    };
    if !still_open(state.clone(), room.clone(), breakouts.clone()).await {
        return;
    }
    let notice =
        json!({"warning": "the breakout rooms close soon", "closes_in_secs": warning.as_secs()});
    broadcast_to(&state, &breakouts, notice.to_string().as_bytes()).await;
    tokio::time::sleep(warning).await;
    if still_open(state.clone(), room.clone(), breakouts.clone()).await
        && let Err(e) = close_all(&state, &room).await
    {
        tracing::warn!(room, error = ?e.1, "the breakout timer could not close the rooms");
    }
}

async fn broadcast_to(state: &ApiState, breakouts: &Breakouts, payload: &[u8]) -> usize {
    let mut reached = 0;
    for name in &breakouts.rooms {
        match state
            .room_service
            .send_data(name, BROADCAST_TOPIC, payload, &[])
            .await
        {
            Ok(()) => reached += 1,
            Err(e) => {
                tracing::warn!(room = %name, error = %e, "cannot broadcast to a breakout room")
            }
        }
    }
    reached
}

/// Brings everyone back to the main room, forgets the breakouts, and deletes their rooms a
/// little later (clients moving by token leave by themselves first).
async fn close_all(state: &Arc<ApiState>, room: &str) -> Result<Value, ApiError> {
    let (roles, open) = current(state, room).await?;
    let Some(breakouts) = open else {
        return Err(err(StatusCode::CONFLICT, "no breakout rooms are open"));
    };
    let mut returned = BTreeMap::new();
    for name in &breakouts.rooms {
        for participant in people_in(state, name).await? {
            let identity = participant["identity"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let how = move_to(state, name, room, &participant, &roles).await?;
            returned.insert(identity, how);
        }
    }
    write(state, room, None).await?;
    let (later, rooms) = (state.clone(), breakouts.rooms.clone());
    tokio::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        for name in rooms {
            if let Err(e) = later.room_service.delete_room(&name).await {
                tracing::warn!(room = %name, error = %e, "cannot delete a closed breakout room");
            }
        }
    });
    Ok(json!({ "returned": returned }))
}

/// `DELETE /v1/rooms/{room}/breakouts`: everyone back to the main room.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/breakouts",
    operation_id = "close_breakouts",
    tag = "breakouts",
    summary = "Closes the breakouts: everyone back to the main room",
    params(("room" = String, Path, description = "The room")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Closed", body = schema::BreakoutsClosed),
        schema::ControlRefusals,
        (status = 409, description = "No breakout rooms are open", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn close(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "breakouts-close",
        (Action::RunMeeting, None),
        |_| close_all(&state, &room),
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[schema(as = BroadcastToBreakoutsRequest)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct BroadcastRequest {
    /// 1 to 1000 characters.
    message: String,
}

/// `POST /v1/rooms/{room}/breakouts/broadcast` `{"message"}`: to everyone in every breakout
/// (data topic [`BROADCAST_TOPIC`], `{"from", "message"}`).
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/breakouts/broadcast",
    operation_id = "broadcast_to_breakouts",
    tag = "breakouts",
    summary = "A message to everyone in every breakout",
    params(("room" = String, Path, description = "The room")),
    request_body = BroadcastRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Sent", body = schema::BroadcastResult),
        (status = 400, description = "A bad message", body = schema::ErrorBody),
        schema::ControlRefusals,
        (status = 409, description = "No breakout rooms are open", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn broadcast(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(req): Json<BroadcastRequest>,
) -> Result<Response, ApiError> {
    if req.message.is_empty() || req.message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("message: 1 to {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    control(
        &state,
        &who,
        &room,
        "breakouts-broadcast",
        (Action::RunMeeting, None),
        |_| async {
            let (_, open) = current(&state, &room).await?;
            let breakouts =
                open.ok_or_else(|| err(StatusCode::CONFLICT, "no breakout rooms are open"))?;
            let from = match &who {
                Principal::Participant { identity, .. } => identity.clone(),
                Principal::Operator(_) => "host".to_string(),
            };
            let payload = json!({"from": from, "message": req.message}).to_string();
            let reached = broadcast_to(&state, &breakouts, payload.as_bytes()).await;
            Ok(json!({ "rooms_reached": reached }))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[schema(as = MoveToBreakoutRequest)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct MoveRequest {
    identity: String,
    /// Room number (1..=count), or 0 for the main room.
    to: usize,
}

/// `POST /v1/rooms/{room}/breakouts/move` `{"identity", "to"}`: one participant, from wherever
/// it is in the meeting, to a breakout (1..) or back to the main room (0).
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/breakouts/move",
    operation_id = "move_to_breakout",
    tag = "breakouts",
    summary = "Moves one participant to a breakout, or back (0)",
    params(("room" = String, Path, description = "The room")),
    request_body = MoveRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Moved", body = schema::BreakoutMoved),
        (status = 400, description = "A bad room number", body = schema::ErrorBody),
        schema::ControlRefusals,
        (status = 409, description = "No breakout rooms are open", body = schema::ErrorBody),
    )
)]
pub(in crate::api) async fn move_one(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(req): Json<MoveRequest>,
) -> Result<Response, ApiError> {
    let identity = req.identity.clone();
    control(
        &state,
        &who,
        &room,
        "breakouts-move",
        (Action::Moderate, Some(&identity)),
        |_| async {
            let (roles, open) = current(&state, &room).await?;
            let mut breakouts =
                open.ok_or_else(|| err(StatusCode::CONFLICT, "no breakout rooms are open"))?;
            if req.to > breakouts.rooms.len() {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "to: 0 (the main room) or a breakout's number",
                ));
            }
            let destination = if req.to == 0 {
                room.clone()
            } else {
                breakouts.rooms[req.to - 1].clone()
            };
            let mut found = None;
            for name in std::iter::once(&room).chain(&breakouts.rooms) {
                if let Some(p) = people_in(&state, name)
                    .await?
                    .into_iter()
                    .find(|p| p["identity"] == identity.as_str())
                {
                    found = Some((name.clone(), p));
                    break;
                }
            }
            let (from, participant) = found
                .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such participant in the meeting"))?;
            let how = if from == destination {
                "stayed"
            } else {
                move_to(&state, &from, &destination, &participant, &roles).await?
            };
            match req.to {
                0 => breakouts.assignments.remove(&identity),
                n => breakouts.assignments.insert(identity.clone(), n - 1),
            };
            write(&state, &room, Some(&breakouts)).await?;
            Ok(json!({"identity": identity, "room": destination, "how": how}))
        },
    )
    .await
}

/// `GET /v1/rooms/{room}/breakouts`: the open breakouts, who is assigned where and who is in
/// each now.
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/breakouts",
    operation_id = "list_breakouts",
    tag = "breakouts",
    summary = "The open breakouts and who is in each",
    params(("room" = String, Path, description = "The room")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The breakouts", body = schema::BreakoutsList),
        schema::ControlRefusals,
    )
)]
pub(in crate::api) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    super::authorize(&state, &who, &room, Action::RunMeeting, None).await?;
    let (_, open) = current(&state, &room).await?;
    let Some(breakouts) = open else {
        return Ok(Json(json!({"rooms": []})).into_response());
    };
    let mut rooms = Vec::new();
    for name in &breakouts.rooms {
        let present: Vec<Value> = people_in(&state, name)
            .await?
            .iter()
            .map(|p| p["identity"].clone())
            .collect();
        rooms.push(json!({"room": name, "present": present}));
    }
    Ok(
        Json(json!({"rooms": rooms, "assignments": numbered(&breakouts),
                   "ends_at_ms": breakouts.ends_at_ms}))
        .into_response(),
    )
}
