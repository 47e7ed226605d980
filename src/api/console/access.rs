//! Console access by participant token: a LiveKit access token (HS256, signed with the
//! server's LiveKit API secret, `exp` and `nbf` checked, `video.roomJoin` for one room) sent as
//! `Authorization: Bearer <jwt>` is a read-only caller of that room. What it may call is the
//! list below (GET only); everything else (deleting, controls, minting, webhooks, settings,
//! usage across rooms, metrics) is refused with 403 before the handler runs.

use axum::http::{Method, StatusCode};

use super::super::auth::Caller;
use super::super::{ApiError, ApiState, err};
use crate::captions::journal::unix_ms;

/// The caller of a participant token in `authorization`, or why it is not one.
pub fn participant_caller(state: &ApiState, authorization: Option<&str>) -> Result<Caller, String> {
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no bearer token")?;
    verify(
        &state.livekit_api_key,
        &state.livekit_api_secret,
        token,
        unix_ms(),
    )
}

/// Verifies `token` at `now_ms` (Unix ms). HS256 only (the JWT library refuses `alg: none`
/// and every other algorithm), issuer = the API key, `nbf` and `exp` without leeway.
pub fn verify(api_key: &str, api_secret: &str, token: &str, now_ms: u64) -> Result<Caller, String> {
    if api_secret.is_empty() {
        return Err("no LiveKit API secret is configured".into());
    }
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(api_key, api_secret)
        .verify(token)
        .map_err(|_| "the token does not verify".to_string())?;
    // The JWT library allows a minute of leeway on both ends; console access does not.
    if (claims.exp as u64).saturating_mul(1000) <= now_ms {
        return Err("the token has expired".into());
    }
    if (claims.nbf as u64).saturating_mul(1000) > now_ms {
        return Err("the token is not valid yet".into());
    }
    let room = claims.video.room.as_str();
    if !claims.video.room_join || room.is_empty() || room == "*" || claims.sub.is_empty() {
        return Err("not a participant token of one room".into());
    }
    Ok(Caller::participant(room, &claims.sub))
}

/// Whether a read-only caller may make this call: GET of the reading routes only.
pub fn read_only_may(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "v1", "meetings"] | ["", "v1", "search"] | ["", "v1", "recordings"] => true,
        ["", "v1", "console", "session"] => true,
        ["", "v1", "meetings", id, what] => {
            !id.is_empty() && matches!(*what, "transcript" | "quality" | "engagement" | "summary")
        }
        ["", "v1", "recordings", id, what] => {
            !id.is_empty()
                && matches!(
                    *what,
                    "link" | "poster" | "thumbnails.vtt" | "playlist.m3u8" | "live.m3u8" | "media"
                )
        }
        // The live playlist's segments, served through the API to the console's player.
        ["", "v1", "recordings", id, "live", name] => {
            !id.is_empty() && crate::recording::live_hls::valid_name(name)
        }
        _ => false,
    }
}

/// The refusal of a call a read-only caller may not make.
pub fn refused() -> ApiError {
    err(
        StatusCode::FORBIDDEN,
        "a participant token may only read its room's meetings and recordings",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::{AccessToken, VideoGrants};
    use std::time::Duration;

    const KEY: &str = "devkey";
    const SECRET: &str = "a-secret-of-at-least-32-characters!!";

    fn token(room: &str, join: bool, ttl: Duration, secret: &str) -> String {
        AccessToken::with_api_key(KEY, secret)
            .with_identity("alice")
            .with_ttl(ttl)
            .with_grants(VideoGrants {
                room: room.into(),
                room_join: join,
                ..Default::default()
            })
            .to_jwt()
            .unwrap()
    }

    fn now() -> u64 {
        unix_ms()
    }

    #[test]
    fn a_participant_token_reads_its_own_room_only() {
        let t = token("weekly", true, Duration::from_secs(600), SECRET);
        let caller = verify(KEY, SECRET, &t, now()).unwrap();
        assert!(caller.read_only);
        assert!(caller.may_use("weekly"));
        assert!(!caller.may_use("board") && !caller.all_rooms());
    }

    #[test]
    fn hostile_tokens_are_refused() {
        // Signed with another secret.
        let forged = token(
            "weekly",
            true,
            Duration::from_secs(600),
            "another-secret-of-32-characters!!!!",
        );
        assert!(verify(KEY, SECRET, &forged, now()).is_err());
        // Expired (even within the library's minute of leeway).
        let t = token("weekly", true, Duration::from_secs(10), SECRET);
        assert!(
            verify(KEY, SECRET, &t, now() + 11_000)
                .unwrap_err()
                .contains("expired")
        );
        // Not valid yet.
        assert!(
            verify(KEY, SECRET, &t, now() - 30_000)
                .unwrap_err()
                .contains("not valid yet")
        );
        // No room join, no room, every room.
        for t in [
            token("weekly", false, Duration::from_secs(600), SECRET),
            token("", false, Duration::from_secs(600), SECRET),
            token("*", true, Duration::from_secs(600), SECRET),
        ] {
            assert!(verify(KEY, SECRET, &t, now()).is_err());
        }
        // alg none: the same claims, unsigned.
        let good = token("weekly", true, Duration::from_secs(600), SECRET);
        let payload = good.split('.').nth(1).unwrap();
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        for unsigned in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert!(verify(KEY, SECRET, &unsigned, now()).is_err());
        }
        // HS256 header with the signature stripped or altered.
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = "AAAA";
        assert!(verify(KEY, SECRET, &parts.join("."), now()).is_err());
        // Another issuer (API key).
        assert!(verify("otherkey", SECRET, &good, now()).is_err());
        // Garbage, and an empty secret on the server.
        assert!(verify(KEY, SECRET, "not-a-jwt", now()).is_err());
        assert!(verify(KEY, "", &good, now()).is_err());
    }

    #[test]
    fn read_only_callers_may_read_only() {
        for path in [
            "/v1/meetings",
            "/v1/search",
            "/v1/recordings",
            "/v1/console/session",
            "/v1/meetings/m1/transcript",
            "/v1/meetings/m1/summary",
            "/v1/meetings/m1/quality",
            "/v1/meetings/m1/engagement",
            "/v1/recordings/r1/media",
            "/v1/recordings/r1/playlist.m3u8",
            "/v1/recordings/r1/poster",
            "/v1/recordings/r1/live.m3u8",
            "/v1/recordings/r1/live/init.mp4",
            "/v1/recordings/r1/live/seg-00012.m4s",
        ] {
            assert!(read_only_may(&Method::GET, path), "{path}");
        }
        assert!(!read_only_may(
            &Method::GET,
            "/v1/recordings/r1/live/other.mp4"
        ));
        assert!(!read_only_may(&Method::DELETE, "/v1/recordings/r1"));
        assert!(!read_only_may(&Method::GET, "/v1/recordings/r1"));
        for path in [
            "/metrics",
            "/v1/tokens",
            "/v1/webhooks",
            "/v1/media-jobs",
            "/v1/analytics/usage",
            "/v1/meetings/m1/archive",
            "/v1/rooms/weekly/settings",
            "/v1/meetings//transcript",
        ] {
            assert!(!read_only_may(&Method::GET, path), "{path}");
        }
        assert!(!read_only_may(&Method::POST, "/v1/tokens"));
        assert!(!read_only_may(&Method::PUT, "/v1/rooms/weekly/recording"));
    }
}
