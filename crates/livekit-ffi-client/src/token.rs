//! Access tokens, minted server-side from the API key and secret (never sent to a browser).

use std::time::Duration;

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};

/// A token that lets `identity` join `room` and publish/subscribe.
pub fn room_token(
    api_key: &str,
    api_secret: &str,
    room: &str,
    identity: &str,
    name: &str,
) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_kind("agent")
        .with_ttl(Duration::from_secs(6 * 3600))
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            ..Default::default()
        })
        .to_jwt()
}

/// The token a worker presents on `/agent`.
pub fn worker_token(api_key: &str, api_secret: &str) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(api_key, api_secret)
        .with_ttl(Duration::from_secs(600))
        .with_grants(VideoGrants {
            agent: true,
            ..Default::default()
        })
        .to_jwt()
}
