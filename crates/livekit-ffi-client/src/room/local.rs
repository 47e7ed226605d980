//! What this participant does in the room: publish and unpublish tracks, send data, text
//! streams and transcriptions, set its attributes.

use std::collections::HashMap;

use super::{Room, RoomError, TrackSource};
use crate::engine::{Engine, EngineError};
use crate::proto;
use crate::proto::ffi_event::Message as Ev;
use crate::proto::ffi_request::Message as Req;
use crate::tracks::{LocalAudioTrack, LocalVideoTrack};

impl Room {
    pub async fn publish_audio(
        &self,
        name: &str,
        source: TrackSource,
        sample_rate: u32,
        channels: u32,
    ) -> Result<LocalAudioTrack, RoomError> {
        LocalAudioTrack::publish(&self.local, name, source, sample_rate, channels).await
    }

    pub async fn publish_video(
        &self,
        name: &str,
        source: TrackSource,
        width: u32,
        height: u32,
    ) -> Result<LocalVideoTrack, RoomError> {
        LocalVideoTrack::publish(&self.local, name, source, width, height).await
    }

    pub async fn publish_data(
        &self,
        payload: &[u8],
        topic: Option<&str>,
        reliable: bool,
        destinations: &[String],
    ) -> Result<(), RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let owned = payload.to_vec();
        let req = proto::PublishDataRequest {
            local_participant_handle: self.local.id(),
            data_ptr: owned.as_ptr() as u64,
            data_len: owned.len() as u64,
            reliable,
            topic: topic.map(str::to_string),
            destination_identities: destinations.to_vec(),
            request_async_id: Some(async_id),
            ..Default::default()
        };
        // The payload stays owned by the task until the engine confirms, even if the caller gives up.
        let done = tokio::spawn(async move {
            let r = engine
                .request_async("publish_data", async_id, Req::PublishData(req))
                .await;
            drop(owned);
            r
        });
        match done.await.map_err(|e| RoomError::Operation {
            operation: "publish data",
            message: e.to_string(),
        })?? {
            Ev::PublishData(cb) => callback_result("publish data", cb.error),
            _ => Err(EngineError::UnexpectedResponse("publish_data").into()),
        }
    }

    /// Sends a whole text stream (LiveKit data streams) on `topic` with attributes; with
    /// `sender_identity` the stream is attributed to that participant (as agents do for the
    /// transcriptions of the people they caption).
    pub async fn send_text(
        &self,
        topic: &str,
        text: &str,
        attributes: &HashMap<String, String>,
        stream_id: Option<&str>,
        sender_identity: Option<&str>,
    ) -> Result<String, RoomError> {
        let cb = Engine::get()?
            .call(
                "send_text",
                |async_id| {
                    Req::SendText(proto::StreamSendTextRequest {
                        local_participant_handle: self.local.id(),
                        options: proto::StreamTextOptions {
                            topic: topic.to_string(),
                            attributes: attributes.clone(),
                            id: stream_id.map(str::to_string),
                            sender_identity: sender_identity.map(str::to_string),
                            ..Default::default()
                        },
                        text: text.to_string(),
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::SendText(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        match cb.result {
            Some(proto::stream_send_text_callback::Result::Info(info)) => Ok(info.stream_id),
            Some(proto::stream_send_text_callback::Result::Error(e)) => Err(RoomError::Operation {
                operation: "send text",
                message: e.description,
            }),
            None => Err(EngineError::UnexpectedResponse("send_text").into()),
        }
    }

    /// Legacy transcription packet attributed to `participant_identity`'s track.
    pub async fn publish_transcription(
        &self,
        participant_identity: &str,
        track_sid: &str,
        segments: Vec<proto::TranscriptionSegment>,
    ) -> Result<(), RoomError> {
        let cb = Engine::get()?
            .call(
                "publish_transcription",
                |async_id| {
                    Req::PublishTranscription(proto::PublishTranscriptionRequest {
                        local_participant_handle: self.local.id(),
                        participant_identity: participant_identity.to_string(),
                        track_id: track_sid.to_string(),
                        segments,
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::PublishTranscription(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        callback_result("publish transcription", cb.error)
    }

    pub async fn set_attributes(
        &self,
        attributes: &HashMap<String, String>,
    ) -> Result<(), RoomError> {
        let attributes = attributes
            .iter()
            .map(|(k, v)| proto::AttributesEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let cb = Engine::get()?
            .call(
                "set_local_attributes",
                |async_id| {
                    Req::SetLocalAttributes(proto::SetLocalAttributesRequest {
                        local_participant_handle: self.local.id(),
                        attributes,
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::SetLocalAttributes(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        callback_result("set attributes", cb.error)
    }

    /// Stops publishing one of this participant's tracks.
    pub async fn unpublish(&self, track_sid: &str) -> Result<(), RoomError> {
        let cb = Engine::get()?
            .call(
                "unpublish_track",
                |async_id| {
                    Req::UnpublishTrack(proto::UnpublishTrackRequest {
                        local_participant_handle: self.local.id(),
                        track_sid: track_sid.to_string(),
                        stop_on_unpublish: true,
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::UnpublishTrack(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        callback_result("unpublish track", cb.error)
    }
}

fn callback_result(operation: &'static str, error: Option<String>) -> Result<(), RoomError> {
    match error {
        Some(message) if !message.is_empty() => Err(RoomError::Operation { operation, message }),
        _ => Ok(()),
    }
}
