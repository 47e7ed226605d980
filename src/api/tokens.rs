//! Participant tokens for the web app (`POST /v1/tokens`): one room, join and only the asked
//! rights, a short life, an identity that is well-formed and not one the agent uses, and a rate
//! limit per key. The LiveKit secret stays here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Caller;
use super::openapi::schema;
use super::{ApiError, ApiState, err, room_allowed};
use crate::protocol::{MEETING_ROLE_ATTRIBUTE, MEETING_WAITING};

/// Longest identity, in characters.
pub const MAX_IDENTITY_CHARS: usize = 128;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 256;

/// Which identities minted tokens may carry (`api.reserved_identity_prefixes`,
/// `api.identity_extra_chars`).
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    reserved_prefixes: Vec<String>,
    extra_chars: String,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        Self::from_config(&crate::config::ApiConfig::default())
    }
}

impl IdentityPolicy {
    pub fn from_config(api: &crate::config::ApiConfig) -> Self {
        Self {
            reserved_prefixes: api
                .reserved_identity_prefixes
                .iter()
                .map(|p| p.to_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
            extra_chars: api.identity_extra_chars.clone(),
        }
    }

    /// Why `identity` may not be minted, if it may not.
    pub fn check(&self, identity: &str) -> Result<(), String> {
        if identity.is_empty() || identity.chars().count() > MAX_IDENTITY_CHARS {
            return Err(format!(
                "identity is required, at most {MAX_IDENTITY_CHARS} characters"
            ));
        }
        if let Some(c) = identity
            .chars()
            .find(|&c| !c.is_ascii_alphanumeric() && !self.extra_chars.contains(c))
        {
            return Err(format!(
                "identity may hold letters, digits and {:?} only, not {c:?}",
                self.extra_chars
            ));
        }
        // Case-insensitive: `Agent-1` is refused like `agent-1`.
        let lower = identity.to_lowercase();
        if let Some(prefix) = self
            .reserved_prefixes
            .iter()
            .find(|p| lower.starts_with(p.as_str()))
        {
            return Err(format!(
                "identities starting with {prefix:?} are reserved for the agent"
            ));
        }
        Ok(())
    }
}

/// Why a display name is refused, if it is.
fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name is at most {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name may not hold control characters".into());
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    /// At most 256 characters; a room the key may use.
    room: String,
    /// ASCII letters, digits and `api.identity_extra_chars`, at most 128; no reserved prefix.
    identity: String,
    /// Display name (at most 128 characters); the identity when absent.
    name: Option<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    can_publish: bool,
    #[serde(default = "yes")]
    #[schema(default = true)]
    can_subscribe: bool,
    /// Lets the participant set its own attributes (`vb.*`, `captions.*`): honoured only for
    /// keys with `participant_attributes = true`.
    #[serde(default)]
    can_update_own_metadata: bool,
    /// Seconds; 600 when absent, at most `api.token_max_ttl_secs`.
    ttl_secs: Option<u64>,
    /// The participant's role in the meeting (kept in the room's metadata).
    #[serde(default)]
    #[schema(default = "participant")]
    role: crate::meeting::Role,
    /// The platform vouches that the user signed in (the waiting room may admit them at once).
    #[serde(default)]
    signed_in: bool,
}

fn yes() -> bool {
    true
}

/// Whether the token's holder must wait to be admitted: the waiting room is on, and no rule
/// admits them at once or the meeting is full.
async fn waits(
    state: &ApiState,
    req: &TokenRequest,
    waiting_room: &crate::meeting::WaitingRoom,
) -> Result<bool, ApiError> {
    if !waiting_room.enabled {
        return Ok(false);
    }
    if !waiting_room.admits_at_once(&req.identity, req.signed_in) {
        return Ok(true);
    }
    let Some(capacity) = waiting_room.capacity else {
        return Ok(false);
    };
    let inside = match state.room_service.participants(&req.room).await {
        Ok(participants) => super::controls::waiting::admitted(&participants),
        Err(crate::livekit::room_service::RoomServiceError::NoSuchRoom(_)) => 0,
        Err(e) => return Err(super::settings::room_service_error(e)),
    };
    Ok(inside >= capacity as usize)
}

/// A participant token for one room, with only the asked rights and a short life.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "mint_token",
    tag = "tokens",
    summary = "A participant token for the web app",
    request_body = TokenRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The token", body = schema::MintedToken),
        (status = 400, description = "A bad room, identity or name", body = schema::ErrorBody),
        schema::NoApiKey,
        (
            status = 403,
            description = "The key may not use the room or grant `can_update_own_metadata`",
            body = schema::ErrorBody
        ),
        (status = 409, description = "The role cannot be given", body = schema::ErrorBody),
        (status = 423, description = "The meeting is locked", body = schema::ErrorBody),
        (
            status = 429,
            description = "The key's token rate limit is reached",
            body = schema::ErrorBody
        ),
        schema::LiveKitErrors,
    )
)]
pub(super) async fn mint_token(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Json(req): Json<TokenRequest>,
) -> Result<Response, ApiError> {
    if req.room.is_empty() || req.room.chars().count() > MAX_ROOM_CHARS {
        return Err(err(
            StatusCode::BAD_REQUEST,
            format!("room is required, at most {MAX_ROOM_CHARS} characters"),
        ));
    }
    room_allowed(&who, &req.room)?;
    state
        .identities
        .check(&req.identity)
        .map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    if let Some(name) = &req.name {
        check_name(name).map_err(|e| err(StatusCode::BAD_REQUEST, e))?;
    }
    if req.can_update_own_metadata && !who.participant_attributes {
        return Err(err(
            StatusCode::FORBIDDEN,
            "this key may not grant can_update_own_metadata (participant_attributes = false)",
        ));
    }
    {
        let mut minted = state.minted.lock().unwrap_or_else(|e| e.into_inner());
        let entry = minted.entry(who.id.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        if entry.1 >= state.token_rate_per_minute {
            return Err(err(
                StatusCode::TOO_MANY_REQUESTS,
                "token rate limit reached; try again within a minute",
            ));
        }
        entry.1 += 1;
    }
    // A locked meeting lets nobody new in; a role is recorded before the token exists.
    let meeting = super::controls::meeting_state(&state, &req.room).await?;
    if meeting.locked {
        return Err(err(
            StatusCode::LOCKED,
            format!("the meeting in room {:?} is locked", req.room),
        ));
    }
    if req.role != crate::meeting::Role::Participant {
        super::controls::give_minted_role(&state, &req.room, &req.identity, req.role).await?;
    }
    let waits = !req.role.moderates() && waits(&state, &req, &meeting.waiting_room).await?;
    // `token_max_ttl` is bounded by the configuration's validation (at most a week), so the
    // expiry cannot overflow.
    let ttl = Duration::from_secs(req.ttl_secs.unwrap_or(600).max(1)).min(state.token_max_ttl);
    use livekit_api::access_token::{AccessToken, VideoGrants};
    let token = AccessToken::with_api_key(&state.livekit_api_key, &state.livekit_api_secret)
        .with_identity(&req.identity)
        .with_name(req.name.as_deref().unwrap_or(&req.identity))
        .with_ttl(ttl)
        .with_attributes(
            [(MEETING_ROLE_ATTRIBUTE, req.role.as_str())]
                .into_iter()
                .chain(waits.then_some((MEETING_WAITING, "true"))),
        )
        .with_grants(VideoGrants {
            room_join: true,
            room: req.room.clone(),
            // Who waits gets no rights until a host admits them.
            can_publish: Some(req.can_publish && !waits),
            can_subscribe: Some(req.can_subscribe && !waits),
            can_publish_data: Some(req.can_publish && !waits),
            can_update_own_metadata: Some(req.can_update_own_metadata && !waits),
            ..Default::default()
        })
        .to_jwt()
        .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the token"))?;
    tracing::info!(caller = %who.id, room = %req.room, identity = %req.identity, role = req.role.as_str(), ttl_secs = ttl.as_secs(), can_update_own_metadata = req.can_update_own_metadata, "participant token minted");
    let waiting_message = waits.then_some(meeting.waiting_room.message);
    Ok(Json(json!({"token": token, "room": req.room, "identity": req.identity, "role": req.role.as_str(), "waiting": waits, "waiting_message": waiting_message, "expires_in": ttl.as_secs()})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_well_formed_and_never_the_agents() {
        let policy = IdentityPolicy::default();
        for ok in [
            "web-ann",
            "ann.smith@example.com",
            "user:42",
            "a_b",
            "agent",
        ] {
            assert_eq!(policy.check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "agent-AJ_123",
            "Agent-x",
            "",
            "ann smith",
            "ann/../x",
            "ann\u{0}",
            "ünï",
            "a\nb",
        ] {
            assert!(policy.check(bad).is_err(), "{bad:?}");
        }
        assert!(policy.check(&"a".repeat(MAX_IDENTITY_CHARS)).is_ok());
        assert!(policy.check(&"a".repeat(MAX_IDENTITY_CHARS + 1)).is_err());
        // Configurable.
        let custom = IdentityPolicy::from_config(&crate::config::ApiConfig {
            reserved_identity_prefixes: vec!["bot-".into()],
            identity_extra_chars: "-".into(),
            ..Default::default()
        });
        assert!(custom.check("agent-1").is_ok());
        assert!(custom.check("bot-1").is_err());
        assert!(custom.check("a@b").is_err());
    }

    #[test]
    fn names_are_bounded() {
        assert!(check_name("Ann Smith (Café)").is_ok());
        assert!(check_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(check_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
