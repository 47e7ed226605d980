//! LiveKit's RoomService (Twirp over HTTP, JSON), as far as the control API needs it: reading
//! and updating a room's metadata, which carries the room-wide switches the agent follows.

use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RoomServiceError {
    #[error("LiveKit RoomService {method}: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
    #[error("room {0:?} does not exist")]
    NoSuchRoom(String),
}

#[derive(Clone)]
pub struct RoomService {
    http_url: String,
    api_key: String,
    api_secret: String,
    client: reqwest::Client,
}

impl RoomService {
    /// `url`: the server's `ws(s)://` or `http(s)://` URL.
    pub fn new(url: &str, api_key: &str, api_secret: &str) -> Self {
        let http_url = if let Some(rest) = url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else if let Some(rest) = url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else {
            url.to_string()
        };
        Self {
            http_url: http_url.trim_end_matches('/').to_string(),
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("an HTTP client with a timeout builds"),
        }
    }

    async fn call(
        &self,
        method: &'static str,
        room: &str,
        body: Value,
    ) -> Result<Value, RoomServiceError> {
        let fail = |message: String| RoomServiceError::Call { method, message };
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_grants(VideoGrants {
                room_list: true,
                room_admin: true,
                room: room.to_string(),
                ..Default::default()
            })
            .with_ttl(std::time::Duration::from_secs(60))
            .to_jwt()
            .map_err(|e| fail(e.to_string()))?;
        let response = self
            .client
            .post(format!(
                "{}/twirp/livekit.RoomService/{method}",
                self.http_url
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {status}: {}",
                value["msg"].as_str().unwrap_or("no message")
            )));
        }
        Ok(value)
    }

    /// The room's metadata, or `NoSuchRoom`.
    pub async fn room_metadata(&self, room: &str) -> Result<String, RoomServiceError> {
        let rooms = self
            .call("ListRooms", room, json!({"names": [room]}))
            .await?;
        rooms["rooms"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == room))
            .map(|r| r["metadata"].as_str().unwrap_or_default().to_string())
            .ok_or_else(|| RoomServiceError::NoSuchRoom(room.to_string()))
    }

    /// Sets attributes of a participant in the room (other attributes are kept).
    pub async fn set_attributes(
        &self,
        room: &str,
        identity: &str,
        attributes: &std::collections::HashMap<String, String>,
    ) -> Result<(), RoomServiceError> {
        self.call(
            "UpdateParticipant",
            room,
            json!({"room": room, "identity": identity, "attributes": attributes}),
        )
        .await
        .map(|_| ())
    }

    /// Sets keys of the room's metadata (a JSON object), keeping the others, in one update:
    /// the server's metadata reads lag its writes, so key-by-key updates could lose a key.
    /// Metadata that is not a JSON object is replaced.
    pub async fn set_switches(
        &self,
        room: &str,
        switches: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<(), RoomServiceError> {
        let current = self.room_metadata(room).await?;
        let mut object = match serde_json::from_str::<Value>(&current) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        object.extend(switches);
        self.call(
            "UpdateRoomMetadata",
            room,
            json!({"room": room, "metadata": Value::Object(object).to_string()}),
        )
        .await
        .map(|_| ())
    }
}
