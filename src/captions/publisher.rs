//! Puts captions into the room the two ways LiveKit clients read them: a text stream on
//! `lk.transcription` (attributed to the speaker, with `lk.transcribed_track_id`,
//! `lk.segment_id`, `lk.transcription_final`), and a legacy transcription packet. Offline
//! processing, tests and benchmarks take them from a channel instead.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::livekit::proto::TranscriptionSegment;
use crate::livekit::{Room, RoomError};

pub const TOPIC: &str = "lk.transcription";

#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub participant: String,
    pub track_sid: String,
    pub segment_id: String,
    pub text: String,
    pub is_final: bool,
    /// Milliseconds since the meeting (the agent's session in the room) started.
    pub start_ms: u64,
    pub end_ms: u64,
    pub language: String,
}

#[derive(Clone)]
pub enum CaptionPublisher {
    /// Into the room, the two ways LiveKit clients read captions.
    Room(Arc<Room>),
    /// Into a channel; a receiver that has gone away just stops listening.
    Channel(mpsc::UnboundedSender<Caption>),
}

impl CaptionPublisher {
    pub async fn publish(&self, caption: &Caption) -> Result<(), RoomError> {
        match self {
            Self::Room(room) => publish_to_room(room, caption).await,
            Self::Channel(tx) => {
                let _ = tx.send(caption.clone());
                Ok(())
            }
        }
    }
}

async fn publish_to_room(room: &Room, caption: &Caption) -> Result<(), RoomError> {
    let attributes: HashMap<String, String> = [
        ("lk.transcribed_track_id", caption.track_sid.clone()),
        ("lk.segment_id", caption.segment_id.clone()),
        ("lk.transcription_final", caption.is_final.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    room.send_text(
        TOPIC,
        &caption.text,
        &attributes,
        None,
        Some(&caption.participant),
    )
    .await?;
    // Clients built on LiveKit's Rust SDK crash on a legacy packet without a track sid.
    if !caption.track_sid.is_empty() {
        let segment = TranscriptionSegment {
            id: caption.segment_id.clone(),
            text: caption.text.clone(),
            start_time: caption.start_ms,
            end_time: caption.end_ms,
            r#final: caption.is_final,
            language: caption.language.clone(),
        };
        room.publish_transcription(&caption.participant, &caption.track_sid, vec![segment])
            .await?;
    }
    Ok(())
}
