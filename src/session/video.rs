//! Camera and screen-share pipeline: per-track frame figures (size, rate, content changes).

use std::time::Duration;

use super::{MeetingSession, SessionReport};
use crate::livekit::VideoStream;
use crate::media::analysis::luma_digest;

const REPORT_EVERY: Duration = Duration::from_secs(1);

pub async fn run(
    mut stream: VideoStream,
    session: MeetingSession,
    room: String,
    participant: String,
    sid: String,
) {
    let (mut frames, mut distinct, mut last_digest) = (0u64, 0u64, None);
    let mut window_start = tokio::time::Instant::now();
    while let Some(frame) = stream.recv().await {
        frames += 1;
        let digest = luma_digest(&frame);
        if last_digest != Some(digest) {
            distinct += 1;
        }
        last_digest = Some(digest);
        if window_start.elapsed() >= REPORT_EVERY {
            tracing::debug!(%room, %participant, %sid, frames, distinct, width = frame.width, height = frame.height, "video");
            session.report(SessionReport::VideoStats {
                room: room.clone(),
                participant: participant.clone(),
                sid: sid.clone(),
                frames,
                distinct,
                width: frame.width,
                height: frame.height,
            });
            (frames, distinct) = (0, 0);
            window_start = tokio::time::Instant::now();
        }
    }
}
