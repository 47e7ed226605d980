//! Meeting controls (`/v1/rooms/{room}/...`): mute one or everyone (optionally keeping them
//! muted), release, remove, give roles (promote, demote, transfer host), lock; each recorded in
//! the audit log. They need LiveKit's server API, so they run here with the secret; a host's
//! browser calls them with its own participant token.
//!
//! Who calls: an operator's API key (any participant of its rooms), or a participant of the
//! room with a token this server signed, acting as its role in the room's metadata at that
//! moment ([`crate::meeting::roles`]). Both are checked from the headers before the body is
//! read. The waiting room's calls are in [`waiting`].

pub mod breakouts;
pub mod waiting;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::Caller;
use super::openapi::schema;
use super::settings::room_service_error;
use super::{ApiError, ApiState, err};
use crate::captions::journal::unix_ms;
use crate::meeting::MeetingState;
use crate::meeting::roles::{self, Action, Role, Roles};
use crate::protocol::{MEETING_LOCKED, MEETING_ROLES, MEETING_SPOTLIGHT};
use crate::store::AuditEntry;

/// Who calls a meeting control.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An operator's API key: acts on any participant of the rooms it may use.
    Operator(Caller),
    /// A participant, by the token this server signed for `room`.
    Participant { room: String, identity: String },
}

impl Principal {
    /// How the audit log names the caller.
    fn name(&self) -> String {
        match self {
            Principal::Operator(caller) => format!("key:{}", caller.id),
            Principal::Participant { identity, .. } => identity.clone(),
        }
    }
}

/// Authenticates a control call from its headers alone: an API key, else a participant token
/// signed with this server's LiveKit secret and not expired (no leeway). Anything else is 401
/// before the body is read.
pub(super) async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match state.keys.authenticate(authorization) {
        Some(caller) => Principal::Operator(caller),
        None => participant(&state, authorization)?,
    };
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

fn participant(state: &ApiState, authorization: Option<&str>) -> Result<Principal, ApiError> {
    let unauthorized = |why: &str| {
        err(
            StatusCode::UNAUTHORIZED,
            format!("an API key or the caller's participant token is required ({why})"),
        )
    };
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("Authorization: Bearer ..."))?;
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(
        &state.livekit_api_key,
        &state.livekit_api_secret,
    )
    .verify(token)
    .map_err(|_| unauthorized("the token does not verify"))?;
    // The JWT library allows a minute past expiry; a control does not.
    if (claims.exp as u64) * 1000 <= unix_ms() {
        return Err(unauthorized("the token has expired"));
    }
    if !claims.video.room_join || claims.video.room.is_empty() || claims.sub.is_empty() {
        return Err(unauthorized("not a participant token"));
    }
    Ok(Principal::Participant {
        room: claims.video.room,
        identity: claims.sub,
    })
}

/// The room's roles now.
async fn roles_of(state: &ApiState, room: &str) -> Result<Roles, ApiError> {
    let metadata = state
        .room_service
        .room_metadata(room)
        .await
        .map_err(room_service_error)?;
    Ok(Roles::from_metadata(&metadata))
}

/// Whether a participant (LiveKit's `ParticipantInfo` JSON) is an agent.
fn is_agent(participant: &Value) -> bool {
    participant["kind"] == "AGENT" || participant["kind"] == 4
}

/// Checks that `who` may do `action` in `room` (to `target`, when it names one). A participant
/// must be in the room now, with a role allowing it.
async fn authorize(
    state: &ApiState,
    who: &Principal,
    room: &str,
    action: Action,
    target: Option<&str>,
) -> Result<Roles, ApiError> {
    // Whether the caller may touch the room at all comes first: another room's caller learns
    // nothing of this one (not even whether it exists).
    match who {
        Principal::Operator(caller) => super::room_allowed(caller, room)?,
        Principal::Participant {
            room: token_room, ..
        } if token_room != room => {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!("this token is for another room, not {room:?}"),
            ));
        }
        Principal::Participant { .. } => {}
    }
    let roles = roles_of(state, room).await?;
    match who {
        Principal::Operator(_) => {}
        Principal::Participant { identity, .. } => {
            let present = state
                .room_service
                .participants(room)
                .await
                .map_err(room_service_error)?
                .iter()
                .any(|p| p["identity"] == identity.as_str());
            if !present {
                return Err(err(
                    StatusCode::FORBIDDEN,
                    "only a participant in the meeting may run it",
                ));
            }
            roles::check(roles.of(identity), action, target.map(|t| roles.of(t)))
                .map_err(|why| err(StatusCode::FORBIDDEN, why))?;
        }
    }
    Ok(roles)
}

/// Records a control action (who, what, whom, when, result); the call's answer does not
/// depend on it, but a store that fails is logged.
async fn audit(
    state: &ApiState,
    who: &Principal,
    room: &str,
    action: &str,
    target: Option<&str>,
    result: &Result<Value, ApiError>,
) {
    let entry = AuditEntry {
        room: room.to_string(),
        at_ms: unix_ms() as i64,
        actor: who.name(),
        action: action.to_string(),
        target: target.map(str::to_string),
        result: match result {
            Ok(_) => "ok".to_string(),
            Err(ApiError(status, message)) => format!("{}: {message}", status.as_u16()),
        },
    };
    tracing::info!(room, actor = %entry.actor, action, target, result = %entry.result, "meeting control");
    if let Some(events) = &state.events {
        let key = format!(
            "{room}/{}/{action}/{}/{}",
            entry.at_ms,
            target.unwrap_or(""),
            entry.actor
        );
        let data = serde_json::json!({
            "room": room,
            "actor": entry.actor,
            "action": action,
            "target": target,
            "result": entry.result,
        });
        events.emit_in_background(crate::integrations::Event::new(
            "control.action",
            Some(room),
            &key,
            entry.at_ms,
            data,
        ));
    }
    if let Some(store) = &state.store
        && let Err(e) = store.add_audit(&entry).await
    {
        tracing::warn!(error = %e, "cannot record a meeting control in the audit log");
    }
}

/// Runs a control: authorise, act, audit (refusals too), answer.
async fn control<F>(
    state: &ApiState,
    who: &Principal,
    room: &str,
    name: &str,
    (action, target): (Action, Option<&str>),
    act: impl FnOnce(Roles) -> F,
) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Result<Value, ApiError>>,
{
    let result = match authorize(state, who, room, action, target).await {
        Ok(roles) => act(roles).await,
        Err(e) => Err(e),
    };
    audit(state, who, room, name, target, &result).await;
    result.map(|v| Json(v).into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MuteRequest {
    /// Also take the right to publish a microphone until released.
    #[serde(default)]
    keep_muted: bool,
}

/// The audio tracks a participant publishes from a microphone (or of unknown source).
fn microphones(participant: &Value) -> Vec<String> {
    participant["tracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "AUDIO" || t["type"] == 0)
        .filter(|t| !matches!(t["source"].as_str(), Some("SCREEN_SHARE_AUDIO")))
        .filter_map(|t| t["sid"].as_str().map(str::to_string))
        .collect()
}

/// LiveKit's sources, as its JSON names them, other than the microphone.
const SOURCES_BUT_MICROPHONE: [&str; 3] = ["CAMERA", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"];

/// `participant`'s permission with publishing a microphone taken (`keep_muted`) or given back.
fn microphone_permission(participant: &Value, allowed: bool) -> Value {
    let mut permission = participant["permission"].clone();
    if !permission.is_object() {
        permission = json!({"can_subscribe": true, "can_publish": true, "can_publish_data": true});
    }
    // No list means every source.
    permission["can_publish_sources"] = if allowed {
        json!([])
    } else {
        json!(SOURCES_BUT_MICROPHONE)
    };
    permission
}

/// Mutes `participant`'s microphones, and with `keep_muted` takes the right to publish one.
async fn mute(
    state: &ApiState,
    room: &str,
    participant: &Value,
    keep_muted: bool,
) -> Result<usize, ApiError> {
    let identity = participant["identity"].as_str().unwrap_or_default();
    let tracks = microphones(participant);
    for sid in &tracks {
        state
            .room_service
            .mute_track(room, identity, sid, true)
            .await
            .map_err(room_service_error)?;
    }
    if keep_muted {
        state
            .room_service
            .set_permission(room, identity, microphone_permission(participant, false))
            .await
            .map_err(room_service_error)?;
    }
    Ok(tracks.len())
}

async fn find(state: &ApiState, room: &str, identity: &str) -> Result<Value, ApiError> {
    state
        .room_service
        .participants(room)
        .await
        .map_err(room_service_error)?
        .into_iter()
        .find(|p| p["identity"] == identity)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such participant in the room"))
}

/// `POST /v1/rooms/{room}/participants/{identity}/mute` `{"keep_muted": bool}`.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/participants/{identity}/mute",
    operation_id = "mute_participant",
    tag = "controls",
    summary = "Mutes the participant's microphones",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    request_body(
        content = Option<MuteRequest>,
        description = "Optional: no body is `keep_muted: false`"
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Muted", body = schema::MuteResult),
        schema::ControlRefusals,
    )
)]
pub(super) async fn mute_one(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
    body: Option<Json<MuteRequest>>,
) -> Result<Response, ApiError> {
    let keep_muted = body.map(|b| b.0.keep_muted).unwrap_or_default();
    let name = if keep_muted { "mute-keep" } else { "mute" };
    control(
        &state,
        &who,
        &room,
        name,
        (Action::Moderate, Some(&identity)),
        |_| async {
            let participant = find(&state, &room, &identity).await?;
            let muted = mute(&state, &room, &participant, keep_muted).await?;
            Ok(json!({"muted_tracks": muted, "keep_muted": keep_muted}))
        },
    )
    .await
}

/// `POST /v1/rooms/{room}/mute-all` `{"keep_muted": bool}`: everyone but hosts, co-hosts and
/// agents.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/mute-all",
    operation_id = "mute_all",
    tag = "controls",
    summary = "Mutes everyone but hosts, co-hosts and agents",
    params(("room" = String, Path, description = "The room")),
    request_body(
        content = Option<MuteRequest>,
        description = "Optional: no body is `keep_muted: false`"
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Who was muted", body = schema::MuteAllResult),
        schema::ControlRefusals,
    )
)]
pub(super) async fn mute_all(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    body: Option<Json<MuteRequest>>,
) -> Result<Response, ApiError> {
    let keep_muted = body.map(|b| b.0.keep_muted).unwrap_or_default();
    let name = if keep_muted {
        "mute-all-keep"
    } else {
        "mute-all"
    };
    control(
        &state,
        &who,
        &room,
        name,
        (Action::RunMeeting, None),
        |roles| {
            let (state, room) = (&state, &room);
            async move {
                let participants = state
                    .room_service
                    .participants(room)
                    .await
                    .map_err(room_service_error)?;
                let mut muted = Vec::new();
                for participant in &participants {
                    let identity = participant["identity"].as_str().unwrap_or_default();
                    let agent = is_agent(participant);
                    if agent || roles.of(identity).moderates() {
                        continue;
                    }
                    mute(state, room, participant, keep_muted).await?;
                    muted.push(identity.to_string());
                }
                Ok(json!({"muted": muted, "keep_muted": keep_muted}))
            }
        },
    )
    .await
}

/// `POST /v1/rooms/{room}/participants/{identity}/release`: may publish a microphone again
/// (after `keep_muted`); unmuting stays the participant's own choice.
#[utoipa::path(
    post,
    path = "/v1/rooms/{room}/participants/{identity}/release",
    operation_id = "release_participant",
    tag = "controls",
    summary = "Lets the participant publish a microphone again",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Released", body = schema::Released),
        schema::ControlRefusals,
    )
)]
pub(super) async fn release(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "release",
        (Action::Moderate, Some(&identity)),
        |_| async {
            let participant = find(&state, &room, &identity).await?;
            state
                .room_service
                .set_permission(&room, &identity, microphone_permission(&participant, true))
                .await
                .map_err(room_service_error)?;
            Ok(json!({"released": identity}))
        },
    )
    .await
}

/// `DELETE /v1/rooms/{room}/participants/{identity}`: removes the participant from the meeting.
#[utoipa::path(
    delete,
    path = "/v1/rooms/{room}/participants/{identity}",
    operation_id = "remove_participant",
    tag = "controls",
    summary = "Removes the participant from the meeting",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Removed", body = schema::Removed),
        schema::ControlRefusals,
    )
)]
pub(super) async fn remove(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    control(
        &state,
        &who,
        &room,
        "remove",
        (Action::Moderate, Some(&identity)),
        |_| async {
            state
                .room_service
                .remove_participant(&room, &identity)
                .await
                .map_err(room_service_error)?;
            Ok(json!({"removed": identity}))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleRequest {
    role: Role,
}

/// Writes the room's roles (under the process's role lock, read again inside it).
async fn write_roles(
    state: &ApiState,
    room: &str,
    change: impl FnOnce(&mut Roles) -> Result<(), ApiError>,
) -> Result<Roles, ApiError> {
    let _one_writer = state.roles_lock.lock().await;
    let mut roles = roles_of(state, room).await?;
    change(&mut roles)?;
    state
        .room_service
        .set_switches(room, [(MEETING_ROLES.to_string(), roles.to_value())])
        .await
        .map_err(room_service_error)?;
    Ok(roles)
}

/// `PUT /v1/rooms/{room}/participants/{identity}/role` `{"role": "host" | "co-host" |
/// "participant" | "guest"}`. A host who makes someone else host hands the meeting over and
/// becomes co-host.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/participants/{identity}/role",
    operation_id = "set_role",
    tag = "controls",
    summary = "Gives a role (a host making someone else host becomes co-host)",
    params(
        ("room" = String, Path, description = "The room"),
        ("identity" = String, Path, description = "The participant"),
    ),
    request_body = RoleRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The room's roles now", body = schema::RolesResult),
        (status = 400, description = "A bad identity", body = schema::ErrorBody),
        schema::ControlRefusals,
        (status = 409, description = "The role cannot be given", body = schema::ErrorBody),
    )
)]
pub(super) async fn set_role(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path((room, identity)): Path<(String, String)>,
    Json(req): Json<RoleRequest>,
) -> Result<Response, ApiError> {
    state
        .identities
        .check(&identity)
        .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    let name = format!("role:{}", req.role.as_str());
    control(
        &state,
        &who,
        &room,
        &name,
        (Action::GiveRoles, Some(&identity)),
        |_| async {
            let roles = write_roles(&state, &room, |roles| {
                roles
                    .set(&identity, req.role)
                    .map_err(|e| err(StatusCode::CONFLICT, e))?;
                if let (Role::Host, Principal::Participant { identity: me, .. }) = (req.role, &who)
                    && me != &identity
                {
                    roles
                        .set(me, Role::CoHost)
                        .map_err(|e| err(StatusCode::CONFLICT, e))?;
                }
                Ok(())
            })
            .await?;
            Ok(json!({"roles": roles.to_value()}))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LockRequest {
    locked: bool,
}

/// `PUT /v1/rooms/{room}/lock` `{"locked": bool}`: a locked meeting gets no new tokens.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/lock",
    operation_id = "lock_meeting",
    tag = "controls",
    summary = "Locks or unlocks the meeting (no tokens are minted while locked)",
    params(("room" = String, Path, description = "The room")),
    request_body = LockRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Set", body = schema::Locked),
        schema::ControlRefusals,
    )
)]
pub(super) async fn lock(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(req): Json<LockRequest>,
) -> Result<Response, ApiError> {
    let name = if req.locked { "lock" } else { "unlock" };
    control(
        &state,
        &who,
        &room,
        name,
        (Action::RunMeeting, None),
        |_| async {
            state
                .room_service
                .set_switches(&room, [(MEETING_LOCKED.to_string(), json!(req.locked))])
                .await
                .map_err(room_service_error)?;
            Ok(json!({"locked": req.locked}))
        },
    )
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SpotlightRequest {
    /// Who is shown large; null or absent: nobody.
    identity: Option<String>,
}

/// `PUT /v1/rooms/{room}/spotlight` `{"identity": "ann" | null}`: the room's metadata says who
/// is in the spotlight; the recording shows that participant large.
#[utoipa::path(
    put,
    path = "/v1/rooms/{room}/spotlight",
    operation_id = "set_spotlight",
    tag = "controls",
    summary = "Puts a participant in the spotlight, or nobody",
    params(("room" = String, Path, description = "The room")),
    request_body = SpotlightRequest,
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "Set", body = schema::Spotlight),
        (status = 400, description = "A bad identity", body = schema::ErrorBody),
        schema::ControlRefusals,
    )
)]
pub(super) async fn spotlight(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
    Json(req): Json<SpotlightRequest>,
) -> Result<Response, ApiError> {
    if let Some(identity) = &req.identity {
        state
            .identities
            .check(identity)
            .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    }
    let identity = req.identity.unwrap_or_default();
    control(
        &state,
        &who,
        &room,
        "spotlight",
        (
            Action::RunMeeting,
            Some(identity.as_str()).filter(|i| !i.is_empty()),
        ),
        |_| async {
            state
                .room_service
                .set_switches(&room, [(MEETING_SPOTLIGHT.to_string(), json!(identity))])
                .await
                .map_err(room_service_error)?;
            Ok(json!({"spotlight": identity}))
        },
    )
    .await
}

/// The meeting's state in `room` now (a room that does not exist has none).
pub(super) async fn meeting_state(state: &ApiState, room: &str) -> Result<MeetingState, ApiError> {
    match state.room_service.room_metadata(room).await {
        Ok(metadata) => Ok(MeetingState::from_metadata(&metadata)),
        Err(crate::livekit::room_service::RoomServiceError::NoSuchRoom(_)) => {
            Ok(MeetingState::default())
        }
        Err(e) => Err(room_service_error(e)),
    }
}

/// Records `role` for `identity` before its token is minted (hosts, co-hosts and guests; a
/// participant needs no entry). The room is created if nobody is in it yet.
pub(super) async fn give_minted_role(
    state: &ApiState,
    room: &str,
    identity: &str,
    role: Role,
) -> Result<(), ApiError> {
    let roles = match roles_of(state, room).await {
        Ok(found) => found,
        Err(_) => {
            state
                .room_service
                .ensure_room(room)
                .await
                .map_err(room_service_error)?;
            roles_of(state, room).await?
        }
    };
    if roles.of(identity) == role {
        return Ok(());
    }
    write_roles(state, room, |roles| {
        roles
            .set(identity, role)
            .map_err(|e| err(StatusCode::CONFLICT, e))
    })
    .await
    .map(|_| ())
}

/// `GET /v1/rooms/{room}/audit`: the room's control actions, newest first (operators and the
/// room's hosts and co-hosts).
#[utoipa::path(
    get,
    path = "/v1/rooms/{room}/audit",
    operation_id = "audit_log",
    tag = "controls",
    summary = "The room's control actions, newest first",
    params(("room" = String, Path, description = "The room")),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The audit log", body = schema::AuditLog),
        schema::ControlRefusals,
        (status = 501, description = "No messaging store is configured", body = schema::ErrorBody),
    )
)]
pub(super) async fn audit_log(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Principal>,
    Path(room): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, &room, Action::RunMeeting, None).await?;
    let store = super::store(&state)?;
    let entries = store.audit(&room, 1000).await?;
    Ok(Json(json!({"room": room, "actions": entries})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_microphones_are_muted() {
        let participant = json!({"identity": "ann", "tracks": [
            {"sid": "TR_mic", "type": "AUDIO", "source": "MICROPHONE"},
            {"sid": "TR_cam", "type": "VIDEO", "source": "CAMERA"},
            {"sid": "TR_share_audio", "type": "AUDIO", "source": "SCREEN_SHARE_AUDIO"},
            {"sid": "TR_old", "type": "AUDIO"},
        ]});
        assert_eq!(microphones(&participant), ["TR_mic", "TR_old"]);
        assert!(microphones(&json!({"identity": "bob"})).is_empty());
    }

    #[test]
    fn keeping_muted_takes_the_microphone_only() {
        let participant = json!({"permission": {"can_subscribe": true, "can_publish": true,
            "can_publish_data": true, "can_update_metadata": true}});
        let kept = microphone_permission(&participant, false);
        assert_eq!(kept["can_publish"], true);
        assert_eq!(kept["can_update_metadata"], true, "other rights stay");
        assert_eq!(kept["can_publish_sources"], json!(SOURCES_BUT_MICROPHONE));
        let released = microphone_permission(&participant, true);
        assert_eq!(released["can_publish_sources"], json!([]));
        // Without a permission to start from, publishing stays allowed.
        assert_eq!(
            microphone_permission(&json!({}), false)["can_publish"],
            true
        );
    }
}
