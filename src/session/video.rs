//! Per-track frame figures of cameras and screen shares (size, rate, content changes).

use std::time::Duration;

use tokio::sync::broadcast;

use super::SessionReport;
use crate::media::VideoFrame;
use crate::media::analysis::luma_digest;

const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Frame figures of one track, reported once a second.
pub struct FrameStats {
    reports: broadcast::Sender<SessionReport>,
    room: String,
    participant: String,
    sid: String,
    frames: u64,
    distinct: u64,
    last_digest: Option<u64>,
    window_start: tokio::time::Instant,
}

impl FrameStats {
    pub fn new(
        reports: broadcast::Sender<SessionReport>,
        room: String,
        participant: String,
        sid: String,
    ) -> Self {
        Self {
            reports,
            room,
            participant,
            sid,
            frames: 0,
            distinct: 0,
            last_digest: None,
            window_start: tokio::time::Instant::now(),
        }
    }

    pub fn push(&mut self, frame: &VideoFrame) {
        self.frames += 1;
        let digest = luma_digest(frame);
        if self.last_digest != Some(digest) {
            self.distinct += 1;
        }
        self.last_digest = Some(digest);
        if self.window_start.elapsed() >= REPORT_EVERY {
            let (room, participant, sid) = (&self.room, &self.participant, &self.sid);
            tracing::debug!(%room, %participant, %sid, frames = self.frames, distinct = self.distinct, width = frame.width, height = frame.height, "video");
            let _ = self.reports.send(SessionReport::VideoStats {
                room: room.clone(),
                participant: participant.clone(),
                sid: sid.clone(),
                frames: self.frames,
                distinct: self.distinct,
                width: frame.width,
                height: frame.height,
            });
            (self.frames, self.distinct) = (0, 0);
            self.window_start = tokio::time::Instant::now();
        }
    }
}
