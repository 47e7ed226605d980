//! Remote media streams (engine -> PCM / I420) and local published tracks (PCM / I420 -> room).

use tokio::sync::mpsc;

use super::engine::{Engine, EngineError, OwnedHandle, SharedHandle};
use super::proto;
use super::proto::ffi_event::Message as Ev;
use super::proto::ffi_request::Message as Req;
use super::proto::ffi_response::Message as Resp;
use super::room::{RoomError, TrackSource, track_stats};
use crate::frames::{AudioFrame, FrameSizeError, VideoFrame};

/// Frames of one remote audio track. Dropping it stops the stream and releases its handle.
pub struct AudioStream {
    handle: OwnedHandle,
    frames: mpsc::Receiver<AudioFrame>,
    _track: SharedHandle,
}

impl AudioStream {
    pub(crate) fn open(
        track: SharedHandle,
        sample_rate: u32,
        channels: u32,
        frame_ms: u32,
    ) -> Result<Self, RoomError> {
        let engine = Engine::get()?;
        let req = proto::NewAudioStreamRequest {
            track_handle: track.id(),
            r#type: proto::AudioStreamType::AudioStreamNative as i32,
            sample_rate: Some(sample_rate),
            num_channels: Some(channels),
            frame_size_ms: Some(frame_ms),
            ..Default::default()
        };
        let Resp::NewAudioStream(resp) = engine.request(Req::NewAudioStream(req))? else {
            return Err(EngineError::UnexpectedResponse("new_audio_stream").into());
        };
        let handle = OwnedHandle::from_proto(resp.stream.handle);
        // A second of audio of headroom: a consumer that falls further behind loses frames
        // (counted in the engine stats) instead of growing memory.
        let (tx, frames) = mpsc::channel((1000 / frame_ms.max(1)) as usize);
        engine.route_audio(handle.id(), tx);
        Ok(Self {
            handle,
            frames,
            _track: track,
        })
    }

    pub async fn recv(&mut self) -> Option<AudioFrame> {
        self.frames.recv().await
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        if let Ok(engine) = Engine::get() {
            engine.unroute_audio(self.handle.id());
        }
    }
}

/// I420 frames of one remote video track. Only the newest few frames are kept.
pub struct VideoStream {
    handle: OwnedHandle,
    frames: mpsc::Receiver<VideoFrame>,
    _track: SharedHandle,
}

impl VideoStream {
    pub(crate) fn open(track: SharedHandle, queue_frames: usize) -> Result<Self, RoomError> {
        let engine = Engine::get()?;
        let req = proto::NewVideoStreamRequest {
            track_handle: track.id(),
            r#type: proto::VideoStreamType::VideoStreamNative as i32,
            format: Some(proto::VideoBufferType::I420 as i32),
            normalize_stride: Some(true),
            queue_size_frames: Some(queue_frames as u32),
        };
        let Resp::NewVideoStream(resp) = engine.request(Req::NewVideoStream(req))? else {
            return Err(EngineError::UnexpectedResponse("new_video_stream").into());
        };
        let handle = OwnedHandle::from_proto(resp.stream.handle);
        let (tx, frames) = mpsc::channel(queue_frames.max(1));
        engine.route_video(handle.id(), tx);
        Ok(Self {
            handle,
            frames,
            _track: track,
        })
    }

    pub async fn recv(&mut self) -> Option<VideoFrame> {
        self.frames.recv().await
    }
}

impl Drop for VideoStream {
    fn drop(&mut self) {
        if let Ok(engine) = Engine::get() {
            engine.unroute_video(self.handle.id());
        }
    }
}

async fn publish_track(
    local: &OwnedHandle,
    track: &OwnedHandle,
    source: TrackSource,
) -> Result<String, RoomError> {
    let cb = Engine::get()?
        .call(
            "publish_track",
            |async_id| {
                Req::PublishTrack(proto::PublishTrackRequest {
                    local_participant_handle: local.id(),
                    track_handle: track.id(),
                    options: proto::TrackPublishOptions {
                        source: Some(source as i32),
                        ..Default::default()
                    },
                    request_async_id: Some(async_id),
                })
            },
            |event| match event {
                Ev::PublishTrack(cb) => Some(cb),
                _ => None,
            },
        )
        .await?;
    match cb.message {
        Some(proto::publish_track_callback::Message::Publication(p)) => {
            // The publication handle is not needed: the track handle keeps it alive.
            let sid = p.info.sid;
            drop(OwnedHandle::from_proto(p.handle));
            Ok(sid)
        }
        Some(proto::publish_track_callback::Message::Error(message)) => Err(RoomError::Operation {
            operation: "publish track",
            message,
        }),
        None => Err(EngineError::UnexpectedResponse("publish_track").into()),
    }
}

fn create_track(name: &str, source: &OwnedHandle, audio: bool) -> Result<OwnedHandle, RoomError> {
    let engine = Engine::get()?;
    let owned = if audio {
        match engine.request(Req::CreateAudioTrack(proto::CreateAudioTrackRequest {
            name: name.to_string(),
            source_handle: source.id(),
        }))? {
            Resp::CreateAudioTrack(r) => r.track,
            _ => return Err(EngineError::UnexpectedResponse("create_audio_track").into()),
        }
    } else {
        match engine.request(Req::CreateVideoTrack(proto::CreateVideoTrackRequest {
            name: name.to_string(),
            source_handle: source.id(),
        }))? {
            Resp::CreateVideoTrack(r) => r.track,
            _ => return Err(EngineError::UnexpectedResponse("create_video_track").into()),
        }
    };
    Ok(OwnedHandle::from_proto(owned.handle))
}

/// What a published track has sent so far, as WebRTC's outbound-rtp running totals summed over
/// its RTP streams (a simulcast video track has one per layer). All zero until the sender has
/// been negotiated and sent its first packet: a track that stays at zero while frames go in
/// never reached the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundTotals {
    pub packets_sent: u64,
    pub bytes_sent: u64,
}

impl OutboundTotals {
    /// The outbound-rtp entries of a local track's statistics, added up.
    pub fn from_stats(stats: &[proto::RtcStats]) -> Self {
        stats
            .iter()
            .filter_map(|s| match &s.stats {
                Some(proto::rtc_stats::Stats::OutboundRtp(r)) => Some(&r.sent),
                _ => None,
            })
            .fold(Self::default(), |total, sent| Self {
                packets_sent: total.packets_sent + sent.packets_sent,
                bytes_sent: total.bytes_sent + sent.bytes_sent,
            })
    }
}

/// GetStats on a local track's handle, reduced to what it sent.
async fn outbound_totals(track: &OwnedHandle) -> Result<OutboundTotals, RoomError> {
    Ok(OutboundTotals::from_stats(&track_stats(track.id()).await?))
}

/// Audio the engine holds ahead of real time for a published track: `capture` waits beyond
/// it. Kept short so a published track never lags; callers that must not wait drop frames.
pub const AUDIO_SOURCE_QUEUE_MS: u32 = 20;

/// A published audio track fed with PCM.
pub struct LocalAudioTrack {
    source: OwnedHandle,
    track: OwnedHandle,
    pub sid: String,
    pub sample_rate: u32,
    pub channels: u32,
}

impl LocalAudioTrack {
    pub(crate) async fn publish(
        local: &OwnedHandle,
        name: &str,
        source_kind: TrackSource,
        sample_rate: u32,
        channels: u32,
    ) -> Result<Self, RoomError> {
        let engine = Engine::get()?;
        let req = proto::NewAudioSourceRequest {
            r#type: proto::AudioSourceType::AudioSourceNative as i32,
            options: Some(proto::AudioSourceOptions {
                echo_cancellation: false,
                noise_suppression: false,
                auto_gain_control: false,
                prefer_hardware: None,
            }),
            sample_rate: Some(sample_rate),
            num_channels: Some(channels),
            queue_size_ms: Some(AUDIO_SOURCE_QUEUE_MS),
            platform_audio_handle: None,
        };
        let Resp::NewAudioSource(resp) = engine.request(Req::NewAudioSource(req))? else {
            return Err(EngineError::UnexpectedResponse("new_audio_source").into());
        };
        let source = OwnedHandle::from_proto(resp.source.handle);
        let track = create_track(name, &source, true)?;
        let sid = publish_track(local, &track, source_kind).await?;
        Ok(Self {
            source,
            track,
            sid,
            sample_rate,
            channels,
        })
    }

    /// What the track has sent so far (zero until its sender is negotiated and sending).
    pub async fn outbound(&self) -> Result<OutboundTotals, RoomError> {
        outbound_totals(&self.track).await
    }

    /// RTP packets the track has sent so far: 0 while nothing reached the network.
    pub async fn packets_sent(&self) -> Result<u64, RoomError> {
        Ok(self.outbound().await?.packets_sent)
    }

    /// Queues one frame of interleaved PCM and returns the buffer for reuse once the engine has
    /// taken it (the engine paces capture to real time through its bounded queue).
    pub async fn capture(&self, samples: Vec<i16>) -> Result<Vec<i16>, RoomError> {
        let engine = Engine::get()?;
        let async_id = engine.next_async_id();
        let req = proto::CaptureAudioFrameRequest {
            source_handle: self.source.id(),
            buffer: proto::AudioFrameBufferInfo {
                data_ptr: samples.as_ptr() as u64,
                num_channels: self.channels,
                sample_rate: self.sample_rate,
                samples_per_channel: (samples.len() / self.channels.max(1) as usize) as u32,
            },
            request_async_id: Some(async_id),
        };
        // The samples stay owned by the task until the engine confirms, even if the caller gives up.
        let done = tokio::spawn(async move {
            let r = engine
                .request_async("capture_audio_frame", async_id, Req::CaptureAudioFrame(req))
                .await;
            (r, samples)
        });
        let (result, samples) = done.await.map_err(|e| RoomError::Operation {
            operation: "capture audio",
            message: e.to_string(),
        })?;
        match result? {
            Ev::CaptureAudioFrame(cb) => match cb.error {
                Some(message) if !message.is_empty() => Err(RoomError::Operation {
                    operation: "capture audio",
                    message,
                }),
                _ => Ok(samples),
            },
            _ => Err(EngineError::UnexpectedResponse("capture_audio_frame").into()),
        }
    }
}

/// A published video track fed with I420 frames.
pub struct LocalVideoTrack {
    source: OwnedHandle,
    track: OwnedHandle,
    pub sid: String,
    pub width: u32,
    pub height: u32,
}

impl LocalVideoTrack {
    pub(crate) async fn publish(
        local: &OwnedHandle,
        name: &str,
        source_kind: TrackSource,
        width: u32,
        height: u32,
    ) -> Result<Self, RoomError> {
        let engine = Engine::get()?;
        let req = proto::NewVideoSourceRequest {
            r#type: proto::VideoSourceType::VideoSourceNative as i32,
            resolution: proto::VideoSourceResolution { width, height },
            is_screencast: Some(source_kind == TrackSource::SourceScreenshare),
        };
        let Resp::NewVideoSource(resp) = engine.request(Req::NewVideoSource(req))? else {
            return Err(EngineError::UnexpectedResponse("new_video_source").into());
        };
        let source = OwnedHandle::from_proto(resp.source.handle);
        let track = create_track(name, &source, false)?;
        let sid = publish_track(local, &track, source_kind).await?;
        Ok(Self {
            source,
            track,
            sid,
            width,
            height,
        })
    }

    /// What the track has sent so far (zero until its sender is negotiated and sending).
    pub async fn outbound(&self) -> Result<OutboundTotals, RoomError> {
        outbound_totals(&self.track).await
    }

    /// RTP packets the track has sent so far: 0 while nothing reached the network.
    pub async fn packets_sent(&self) -> Result<u64, RoomError> {
        Ok(self.outbound().await?.packets_sent)
    }

    /// Hands one I420 frame to the encoder (the engine copies it before returning).
    pub fn capture(&self, frame: &VideoFrame) -> Result<(), RoomError> {
        let expected = VideoFrame::i420_len(frame.width, frame.height);
        if frame.data.len() != expected {
            return Err(RoomError::Operation {
                operation: "capture video",
                message: FrameSizeError::WrongLength {
                    width: frame.width,
                    height: frame.height,
                    expected,
                    actual: frame.data.len(),
                }
                .to_string(),
            });
        }
        let engine = Engine::get()?;
        let (y, u, v) = frame.planes();
        let cw = VideoFrame::chroma_width(frame.width);
        let component = |p: &[u8], stride: u32| proto::video_buffer_info::ComponentInfo {
            data_ptr: p.as_ptr() as u64,
            stride,
            size: p.len() as u32,
        };
        let req = proto::CaptureVideoFrameRequest {
            source_handle: self.source.id(),
            buffer: proto::VideoBufferInfo {
                r#type: proto::VideoBufferType::I420 as i32,
                width: frame.width,
                height: frame.height,
                data_ptr: frame.data.as_ptr() as u64,
                stride: Some(0),
                components: vec![
                    component(y, frame.width),
                    component(u, cw),
                    component(v, cw),
                ],
            },
            timestamp_us: frame.timestamp_us,
            rotation: proto::VideoRotation::VideoRotation0 as i32,
            metadata: None,
        };
        match engine.request(Req::CaptureVideoFrame(req))? {
            Resp::CaptureVideoFrame(_) => Ok(()),
            _ => Err(EngineError::UnexpectedResponse("capture_video_frame").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(packets_sent: u64, bytes_sent: u64) -> proto::RtcStats {
        proto::RtcStats {
            stats: Some(proto::rtc_stats::Stats::OutboundRtp(
                proto::rtc_stats::OutboundRtp {
                    sent: proto::SentRtpStreamStats {
                        packets_sent,
                        bytes_sent,
                    },
                    ..Default::default()
                },
            )),
        }
    }

    #[test]
    fn outbound_totals_add_up_the_senders_streams() {
        assert_eq!(OutboundTotals::from_stats(&[]), OutboundTotals::default());
        let codec = proto::RtcStats {
            stats: Some(proto::rtc_stats::Stats::Codec(Default::default())),
        };
        assert_eq!(
            OutboundTotals::from_stats(std::slice::from_ref(&codec)),
            OutboundTotals::default()
        );
        assert_eq!(
            OutboundTotals::from_stats(&[codec, outbound(10, 1000), outbound(5, 300)]),
            OutboundTotals {
                packets_sent: 15,
                bytes_sent: 1300,
            }
        );
    }
}
