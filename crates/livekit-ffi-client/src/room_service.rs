//! LiveKit's RoomService (Twirp over HTTP, JSON), as far as the control API needs it: reading
//! and updating a room's metadata, which carries the room-wide switches the agent follows.
//!
//! Metadata is one JSON string per room, so setting some keys is a read-modify-write. Writes to
//! one room are serialised inside the process (a per-room lock shared by every clone of the
//! service, dropped when nobody holds or waits for it), and each write is checked: the
//! metadata is read back and, when our keys do not hold our values (another process wrote in
//! between, or the server's read still lagged), the keys are applied again on what the server
//! has now, a bounded number of times with short backoff. LiveKit has no conditional metadata
//! update, so across processes this narrows the window for a lost key (a writer elsewhere whose
//! read is older than ours and whose write lands after our last check) without closing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};
use thiserror::Error;

/// Writes of a room's metadata before giving up when other writers keep interleaving.
const WRITE_ATTEMPTS: u32 = 8;
/// How long after our keys show up they are checked again (a writer in another process that
/// read the metadata before our write may still replace it).
const SETTLE: Duration = Duration::from_millis(50);
/// Reads after each write waiting for the server's metadata to show it.
const READBACK_POLLS: u32 = 4;
/// The first pause between read-backs; doubled each time.
const READBACK_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Debug, Error)]
pub enum RoomServiceError {
    #[error("LiveKit RoomService {method}: {message}")]
    Call {
        method: &'static str,
        message: String,
    },
    #[error("room {0:?} does not exist")]
    NoSuchRoom(String),
    #[error("participant {identity:?} is not in room {room:?}")]
    NoSuchParticipant { room: String, identity: String },
    #[error("the metadata of room {0:?} kept changing under our writes")]
    Contended(String),
}

/// One lock per room with a write in progress or waiting, with the number of its users; an
/// entry goes when its last user does.
type RoomLocks = Arc<Mutex<HashMap<String, (Arc<tokio::sync::Mutex<()>>, usize)>>>;

/// A user of a room's lock entry (waiting or holding); made before waiting, so a write whose
/// future is dropped while it waits (a timed-out call) still gives its place back.
struct RoomTicket {
    locks: RoomLocks,
    room: String,
}

impl Drop for RoomTicket {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = locks.get_mut(&self.room) {
            entry.1 -= 1;
            if entry.1 == 0 {
                locks.remove(&self.room);
            }
        }
    }
}

/// Holds a room's write lock. Fields drop in order: the lock is released, then the entry's
/// user count goes down.
struct RoomWriteGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _ticket: RoomTicket,
}

/// A random pause up to `max`, so writers of other processes that collided do not collide
/// again in step.
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let max_us = max.as_micros().max(1) as u64;
    Duration::from_micros(random % max_us)
}

/// Whether every `(key, value)` of `ours` is in the metadata `current`.
fn holds(current: &str, ours: &serde_json::Map<String, Value>) -> bool {
    match serde_json::from_str::<Value>(current) {
        Ok(Value::Object(map)) => ours.iter().all(|(k, v)| map.get(k) == Some(v)),
        _ => ours.is_empty(),
    }
}

/// `current` with `ours` set in it (other keys kept; metadata that is not a JSON object is
/// replaced).
fn merged(current: &str, ours: &serde_json::Map<String, Value>) -> String {
    let mut object = match serde_json::from_str::<Value>(current) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    object.extend(ours.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(object).to_string()
}

#[derive(Clone)]
pub struct RoomService {
    http_url: String,
    api_key: String,
    api_secret: String,
    client: reqwest::Client,
    /// Per-room write locks, shared by every clone.
    locks: RoomLocks,
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
            locks: RoomLocks::default(),
        }
    }

    /// Rooms with a metadata write in progress or waiting (for tests: entries do not pile up).
    pub fn rooms_locked(&self) -> usize {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits for, then holds, this process's write lock of `room`.
    async fn lock_room(&self, room: &str) -> RoomWriteGuard {
        let (lock, ticket) = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            let entry = locks.entry(room.to_string()).or_default();
            entry.1 += 1;
            (
                entry.0.clone(),
                RoomTicket {
                    locks: self.locks.clone(),
                    room: room.to_string(),
                },
            )
        };
        RoomWriteGuard {
            _guard: lock.lock_owned().await,
            _ticket: ticket,
        }
    }

    async fn call(
        &self,
        method: &'static str,
        room: &str,
        body: Value,
    ) -> Result<Value, RoomServiceError> {
        self.call_service("RoomService", method, room, body).await
    }

    /// A Twirp call to `livekit.<service>/<method>` with an admin token for `room`.
    async fn call_service(
        &self,
        service: &'static str,
        method: &'static str,
        room: &str,
        body: Value,
    ) -> Result<Value, RoomServiceError> {
        let fail = |message: String| RoomServiceError::Call { method, message };
        let token = AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_grants(VideoGrants {
                room_list: true,
                room_admin: true,
                room_create: true,
                room: room.to_string(),
                // MoveParticipant also needs the right to the room it moves into.
                destination_room: body["destination_room"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ..Default::default()
            })
            .with_ttl(std::time::Duration::from_secs(60))
            .to_jwt()
            .map_err(|e| fail(e.to_string()))?;
        let response = self
            .client
            .post(format!(
                "{}/twirp/livekit.{service}/{method}",
                self.http_url
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND || value["code"] == "not_found" {
            return Err(RoomServiceError::NoSuchRoom(room.to_string()));
        }
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

    /// Sets attributes of a participant in the room (other attributes are kept);
    /// `NoSuchParticipant` when the server knows no such participant (or room).
    pub async fn set_attributes(
        &self,
        room: &str,
        identity: &str,
        attributes: &std::collections::HashMap<String, String>,
    ) -> Result<(), RoomServiceError> {
        self.participant_call(
            "UpdateParticipant",
            room,
            identity,
            json!({"room": room, "identity": identity, "attributes": attributes}),
        )
        .await
    }

    /// Creates the room if it does not exist yet (an existing room is left as it is), so its
    /// metadata can be written before anyone joins.
    pub async fn ensure_room(&self, room: &str) -> Result<(), RoomServiceError> {
        self.call("CreateRoom", room, json!({"name": room}))
            .await
            .map(|_| ())
    }

    /// The participants in the room now, as LiveKit's `ParticipantInfo` JSON (identity, kind,
    /// permission, tracks with their sid, type, source and muted state).
    pub async fn participants(&self, room: &str) -> Result<Vec<Value>, RoomServiceError> {
        let listed = self
            .call("ListParticipants", room, json!({"room": room}))
            .await?;
        Ok(listed["participants"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Mutes (or unmutes) one published track of a participant.
    pub async fn mute_track(
        &self,
        room: &str,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<(), RoomServiceError> {
        self.participant_call(
            "MutePublishedTrack",
            room,
            identity,
            json!({"room": room, "identity": identity, "track_sid": track_sid, "muted": muted}),
        )
        .await
    }

    /// Replaces a participant's permission (LiveKit's `ParticipantPermission` JSON).
    pub async fn set_permission(
        &self,
        room: &str,
        identity: &str,
        permission: Value,
    ) -> Result<(), RoomServiceError> {
        self.participant_call(
            "UpdateParticipant",
            room,
            identity,
            json!({"room": room, "identity": identity, "permission": permission}),
        )
        .await
    }

    /// Moves a participant to another room with LiveKit's `MoveParticipant` (its connection
    /// kept); servers without it answer an error (the open-source server: "not implemented").
    pub async fn move_participant(
        &self,
        room: &str,
        identity: &str,
        destination: &str,
    ) -> Result<(), RoomServiceError> {
        self.participant_call(
            "MoveParticipant",
            room,
            identity,
            json!({"room": room, "identity": identity, "destination_room": destination}),
        )
        .await
    }

    /// Sends a reliable data message on `topic` to `identities` in the room (everyone when
    /// empty).
    pub async fn send_data(
        &self,
        room: &str,
        topic: &str,
        payload: &[u8],
        identities: &[String],
    ) -> Result<(), RoomServiceError> {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(payload);
        self.call(
            "SendData",
            room,
            json!({"room": room, "data": data, "kind": "RELIABLE", "topic": topic,
                   "destination_identities": identities}),
        )
        .await
        .map(|_| ())
    }

    /// The room instance's sid and its number of participants, or `None` when no room of
    /// that name exists now.
    pub async fn room_instance(
        &self,
        room: &str,
    ) -> Result<Option<(String, u32)>, RoomServiceError> {
        let rooms = match self.call("ListRooms", room, json!({"names": [room]})).await {
            Ok(rooms) => rooms,
            Err(RoomServiceError::NoSuchRoom(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(rooms["rooms"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == room))
            .map(|r| {
                (
                    r["sid"].as_str().unwrap_or_default().to_string(),
                    r["num_participants"].as_u64().unwrap_or(0) as u32,
                )
            }))
    }

    /// Asks the server to dispatch the agent registered as `agent_name` (empty: the
    /// automatically dispatched one) into `room` (AgentDispatchService); the dispatch's id.
    /// The server creates the room when it does not exist, so callers check first.
    pub async fn create_dispatch(
        &self,
        room: &str,
        agent_name: &str,
        metadata: &str,
    ) -> Result<String, RoomServiceError> {
        let created = self
            .call_service(
                "AgentDispatchService",
                "CreateDispatch",
                room,
                json!({"room": room, "agent_name": agent_name, "metadata": metadata}),
            )
            .await?;
        Ok(created["id"].as_str().unwrap_or_default().to_string())
    }

    /// Deletes the room (everyone in it is disconnected).
    pub async fn delete_room(&self, room: &str) -> Result<(), RoomServiceError> {
        match self.call("DeleteRoom", room, json!({"room": room})).await {
            Ok(_) | Err(RoomServiceError::NoSuchRoom(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the room with `metadata` if it does not exist yet.
    pub async fn create_room(&self, room: &str, metadata: &str) -> Result<(), RoomServiceError> {
        self.call(
            "CreateRoom",
            room,
            json!({"name": room, "metadata": metadata}),
        )
        .await
        .map(|_| ())
    }

    /// Disconnects a participant from the room.
    pub async fn remove_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<(), RoomServiceError> {
        self.participant_call(
            "RemoveParticipant",
            room,
            identity,
            json!({"room": room, "identity": identity}),
        )
        .await
    }

    /// A call about one participant: `NoSuchParticipant` when the server knows no such
    /// participant (or room).
    async fn participant_call(
        &self,
        method: &'static str,
        room: &str,
        identity: &str,
        body: Value,
    ) -> Result<(), RoomServiceError> {
        match self.call(method, room, body).await {
            Ok(_) => Ok(()),
            Err(RoomServiceError::NoSuchRoom(_)) => Err(RoomServiceError::NoSuchParticipant {
                room: room.to_string(),
                identity: identity.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Sets keys of the room's metadata (a JSON object), keeping the others, in one update.
    /// Serialised per room within the process, and checked by reading back: when our keys do
    /// not hold our values afterwards (another writer interleaved, or the server's read lagged
    /// our write), they are applied again on the metadata the server has then, at most
    /// [`WRITE_ATTEMPTS`] times. Metadata that is not a JSON object is replaced.
    pub async fn set_switches(
        &self,
        room: &str,
        switches: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<(), RoomServiceError> {
        let ours: serde_json::Map<String, Value> = switches.into_iter().collect();
        let _lock = self.lock_room(room).await;
        let mut current = self.room_metadata(room).await?;
        for _ in 0..WRITE_ATTEMPTS {
            if !holds(&current, &ours) {
                self.call(
                    "UpdateRoomMetadata",
                    room,
                    json!({"room": room, "metadata": merged(&current, &ours)}),
                )
                .await?;
                // Until the server's reads show the write (they may lag it).
                let mut pause = READBACK_BACKOFF;
                for poll in 0..READBACK_POLLS {
                    if poll > 0 {
                        tokio::time::sleep(pause + jitter(pause)).await;
                        pause *= 2;
                    }
                    current = self.room_metadata(room).await?;
                    if holds(&current, &ours) {
                        break;
                    }
                }
                if !holds(&current, &ours) {
                    // Another writer's metadata replaced ours: apply again on it (just read).
                    continue;
                }
            }
            // Ours now; a writer elsewhere that read before our write may still replace it
            // with what it read, so look once more after a moment.
            tokio::time::sleep(SETTLE + jitter(SETTLE)).await;
            current = self.room_metadata(room).await?;
            if holds(&current, &ours) {
                return Ok(());
            }
        }
        Err(RoomServiceError::Contended(room.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_keys_and_checks_ours() {
        let ours: serde_json::Map<String, Value> = [("recording.enabled".to_string(), json!(true))]
            .into_iter()
            .collect();
        let current = r#"{"captions.enabled":false}"#;
        assert!(!holds(current, &ours));
        let next = merged(current, &ours);
        assert!(holds(&next, &ours));
        assert_eq!(
            serde_json::from_str::<Value>(&next).unwrap(),
            json!({"captions.enabled": false, "recording.enabled": true})
        );
        assert!(!holds(r#"{"recording.enabled":false}"#, &ours));
        assert_eq!(merged("not json", &ours), r#"{"recording.enabled":true}"#);
        assert!(!holds("", &ours));
    }

    #[tokio::test]
    async fn room_locks_serialise_and_do_not_pile_up() {
        let service = RoomService::new("http://127.0.0.1:9", "k", "s");
        let clone = service.clone();
        let first = service.lock_room("weekly").await;
        assert_eq!(service.rooms_locked(), 1);
        // A clone waits for the same room's lock...
        let waiter = tokio::spawn(async move {
            let _g = clone.lock_room("weekly").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second writer waits");
        // ...but not for another room's.
        drop(service.lock_room("board").await);
        // A writer that gives up while waiting (a timed-out call) leaves nothing behind.
        let impatient =
            tokio::time::timeout(Duration::from_millis(20), service.lock_room("weekly"));
        assert!(impatient.await.is_err());
        drop(first);
        waiter.await.unwrap();
        assert_eq!(service.rooms_locked(), 0, "unused entries are removed");
    }
}
