//! A camera's virtual background: `vb.mode` (`blur`, `image` or `off`), `vb.blur` (1..=10) and
//! `vb.image` (an image uploaded to the room, or an allow-listed https URL: checked by
//! `video::background_source`) in the participant's attributes ask for it; the agent
//! publishes the processed frames as `<identity>-vb` at the camera's size and rate. Frames are
//! processed on a thread of their own with one frame waiting at most: a frame that arrives while
//! one waits replaces nothing and is skipped (counted), so latency stays bounded under load. A
//! frame that cannot be processed (a bad image, a model error) goes out unprocessed. An image
//! load in flight is cancelled when the request changes, so a participant toggling its
//! attributes starts at most one load per frame and never piles them up.
//!
//! A published `-vb` track is watched until it sends: the engine can confirm a publication
//! whose sender is never negotiated (the server then drops it after 30 s, "publish time out",
//! and nobody ever sees it). If frames have gone to it for [`STALLED_AFTER`] and it has sent
//! no RTP packet, it is unpublished and published again, at most [`MAX_REPUBLISHES`] times
//! per camera (`meeting_agent_vb_republished_total`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::livekit::{LocalVideoTrack, Room, TrackSource};
use crate::media::VideoFrame;
use crate::media::latency::LatencyHistogram;
use crate::metrics;
use crate::video::background;
use crate::video::background_source::SourcePolicy;
use crate::video::processor::{Processor, SegmenterPool, VbMode};
use prometheus::IntCounter;

pub use crate::protocol::{VB_BLUR, VB_IMAGE, VB_MODE};

/// Frames published with a virtual background.
pub static VB_FRAMES: LazyLock<IntCounter> = LazyLock::new(|| {
    metrics::counter(
        "meeting_agent_vb_frames_total",
        "Camera frames published with a virtual background.",
    )
});
/// Frames skipped because the previous one was still being processed.
pub static VB_FRAMES_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    metrics::counter(
        "meeting_agent_vb_frames_skipped_total",
        "Camera frames skipped because the previous one was still being processed.",
    )
});
/// Frames sent unprocessed because processing failed.
pub static VB_FRAMES_FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    metrics::counter(
        "meeting_agent_vb_frames_failed_total",
        "Camera frames sent unprocessed because processing failed.",
    )
});
/// `-vb` tracks published again because they sent nothing.
pub static VB_REPUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    metrics::counter(
        "meeting_agent_vb_republished_total",
        "Virtual background tracks published again because frames went in but no RTP packet went out.",
    )
});
/// A camera frame's arrival from the engine to its processed copy handed to the `-vb` track.
pub static VB_LATENCY: LatencyHistogram = LatencyHistogram::new();

/// What a participant asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VbRequest {
    #[default]
    Off,
    Blur(u8),
    Image(String),
}

impl VbRequest {
    pub fn from_attributes(attributes: &HashMap<String, String>) -> Self {
        let strength = attributes
            .get(VB_BLUR)
            .and_then(|v| v.trim().parse::<u8>().ok())
            .map(|s| s.clamp(1, 10))
            .unwrap_or(6);
        match attributes
            .get(VB_MODE)
            .map(|m| m.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("blur") => Self::Blur(strength),
            Some("image") => match attributes.get(VB_IMAGE) {
                Some(source) if !source.trim().is_empty() => Self::Image(source.trim().to_string()),
                _ => {
                    tracing::warn!("vb.mode is image but vb.image is empty; blurring instead");
                    Self::Blur(strength)
                }
            },
            None | Some("off") | Some("") => Self::Off,
            Some(other) => {
                tracing::warn!(mode = other, "unknown vb.mode (blur, image, off); off");
                Self::Off
            }
        }
    }
}

/// A published `-vb` track and when the first frame went into it.
struct VbTrack {
    track: LocalVideoTrack,
    first_frame: OnceLock<Instant>,
}

impl VbTrack {
    /// How long frames have been going into the track (`None` before the first).
    fn sending_for(&self) -> Option<Duration> {
        self.first_frame.get().map(Instant::elapsed)
    }
}

/// A frame, when it arrived, how to process it, and where it goes.
type Work = (VideoFrame, Instant, VbMode, Arc<VbTrack>);

/// How often a published track's packets are looked at until it is known to send.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long frames may go into a published track without a packet going out before it is
/// published again (negotiation on a busy machine takes a second or two; the server gives up
/// on a publication after 30 s).
const STALLED_AFTER: Duration = Duration::from_secs(9);
/// Republications of one camera's track before the agent gives up on it.
const MAX_REPUBLISHES: u32 = 3;

/// What a look at a published track's packets says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It sends: nothing more to watch.
    Sending,
    /// Too early to tell: look again later.
    Wait,
    /// Frames went in long enough and nothing went out: publish it again.
    Republish,
    /// As `Republish`, but it was republished [`MAX_REPUBLISHES`] times already.
    GiveUp,
}

/// The watchdog's decision, given how long frames have gone into the track (`None`: none yet),
/// the RTP packets it sent, and how often this camera's track was republished already.
fn verdict(sending_for: Option<Duration>, packets_sent: u64, republished: u32) -> Verdict {
    if packets_sent > 0 {
        Verdict::Sending
    } else if sending_for.is_none_or(|d| d < STALLED_AFTER) {
        Verdict::Wait
    } else if republished >= MAX_REPUBLISHES {
        Verdict::GiveUp
    } else {
        Verdict::Republish
    }
}

/// A look at a published track: its sid, how long frames had gone in, and what it sent.
type Check = (
    String,
    Option<Duration>,
    Result<u64, crate::livekit::RoomError>,
);

/// The processing thread: segments, composites and hands each frame to the published track.
fn worker(pool: Arc<SegmenterPool>, frames: mpsc::Receiver<Work>, participant: String) {
    let mut processor = Processor::new(pool);
    while let Ok((mut frame, arrived, mode, vb)) = frames.recv() {
        // A failed frame is left as it came, so it goes out unprocessed.
        match processor.process(&mut frame, &mode) {
            Ok(_) => {
                VB_FRAMES.inc();
            }
            Err(e) => {
                let failed = VB_FRAMES_FAILED.get();
                VB_FRAMES_FAILED.inc();
                if failed.is_multiple_of(300) {
                    tracing::warn!(%participant, error = %e, "virtual background failed; sending the frame unprocessed");
                }
            }
        }
        match vb.track.capture(&frame) {
            Ok(()) => {
                vb.first_frame.get_or_init(Instant::now);
                VB_LATENCY.record(arrived.elapsed());
            }
            Err(e) => tracing::debug!(%participant, error = %e, "processed frame not captured"),
        }
    }
}

pub struct Camera {
    pub room: Arc<Room>,
    pub participant: String,
    pub pool: Arc<SegmenterPool>,
    pub request: watch::Receiver<VbRequest>,
    /// Which `vb.image` values may be loaded, and from where.
    pub sources: Arc<SourcePolicy>,
}

type ImageLoad = tokio::task::JoinHandle<Result<Arc<image::RgbImage>, background::BackgroundError>>;

impl Camera {
    /// Until the camera's frames end (the track ended) or its request closes (the participant
    /// left or the room ended).
    pub async fn run(mut self, mut frames: tokio::sync::mpsc::Receiver<Arc<VideoFrame>>) {
        let (tx, rx) = mpsc::sync_channel::<Work>(1);
        let (pool, who) = (self.pool.clone(), self.participant.clone());
        let thread = std::thread::Builder::new()
            .name("virtual-background".into())
            .spawn(move || worker(pool, rx, who));
        if let Err(e) = thread {
            return tracing::error!(error = %e, "cannot start the virtual background thread");
        }
        let mut request = self.request.borrow_and_update().clone();
        let mut mode = VbMode::Off;
        let mut loading: Option<ImageLoad> = None;
        let mut warnings = RefusalLog::default();
        let mut track: Option<Arc<VbTrack>> = None;
        let mut changed = true;
        // The publish watchdog: when to look at the track next, and the looks' results (taken
        // on a task of their own, so frames never wait for the engine's statistics).
        let mut next_check: Option<tokio::time::Instant> = None;
        let mut republished = 0u32;
        let (checks_tx, mut checks) = tokio::sync::mpsc::unbounded_channel::<Check>();
        loop {
            let check_at = next_check.unwrap_or_else(|| tokio::time::Instant::now() + CHECK_EVERY);
            tokio::select! {
                frame = frames.recv() => {
                    let Some(frame) = frame else { break };
                    let arrived = Instant::now();
                    if changed {
                        changed = false;
                        if let Some(previous) = loading.take() {
                            previous.abort();
                        }
                        let refused;
                        (mode, loading, refused) = self.apply(&request);
                        if let Some(e) = refused {
                            warnings.warn(&self.participant, &e);
                        }
                    }
                    if loading.as_ref().is_some_and(|l| l.is_finished()) {
                        let result = loading.take().expect("checked").await;
                        mode = match result {
                            Ok(Ok(image)) => VbMode::Image(image),
                            Ok(Err(e)) => {
                                warnings.warn(&self.participant, &e);
                                VbMode::Off
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "background image task failed");
                                VbMode::Off
                            }
                        };
                    }
                    if request == VbRequest::Off {
                        next_check = None;
                        if let Some(t) = track.take()
                            && let Err(e) = self.room.unpublish(&t.track.sid).await
                        {
                            tracing::debug!(error = %e, "unpublishing the background track");
                        }
                        continue;
                    }
                    if track.is_none() {
                        match self.room.publish_video(&format!("{}-vb", self.participant), TrackSource::SourceCamera, frame.width, frame.height).await {
                            Ok(t) => {
                                tracing::info!(participant = %self.participant, sid = %t.sid, republished, "virtual background track published");
                                track = Some(Arc::new(VbTrack { track: t, first_frame: OnceLock::new() }));
                                next_check = Some(tokio::time::Instant::now() + CHECK_EVERY);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot publish the virtual background track");
                                continue;
                            }
                        }
                    }
                    let t = track.clone().expect("published above");
                    // Processing paints over the frame: a copy when the recording shares it.
                    let frame = Arc::unwrap_or_clone(frame);
                    match tx.try_send((frame, arrived, mode.clone(), t)) {
                        Ok(()) => {}
                        Err(mpsc::TrySendError::Full(_)) => {
                            VB_FRAMES_SKIPPED.inc();
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
                () = tokio::time::sleep_until(check_at), if next_check.is_some() => {
                    // One look in flight at a time: the next is scheduled when it reports.
                    next_check = None;
                    let Some(t) = track.clone() else { continue };
                    let report = checks_tx.clone();
                    tokio::spawn(async move {
                        let sent = t.track.packets_sent().await;
                        let _ = report.send((t.track.sid.clone(), t.sending_for(), sent));
                    });
                }
                Some((sid, sending_for, sent)) = checks.recv() => {
                    // A look at a track since withdrawn says nothing.
                    if track.as_ref().is_none_or(|t| t.track.sid != sid) {
                        continue;
                    }
                    let packets = match sent {
                        Ok(packets) => packets,
                        Err(e) => {
                            tracing::debug!(participant = %self.participant, %sid, error = %e, "cannot read the background track's statistics");
                            next_check = Some(tokio::time::Instant::now() + CHECK_EVERY);
                            continue;
                        }
                    };
                    match verdict(sending_for, packets, republished) {
                        Verdict::Sending => {
                            tracing::debug!(participant = %self.participant, %sid, packets, "virtual background track sending");
                        }
                        Verdict::Wait => {
                            next_check = Some(tokio::time::Instant::now() + CHECK_EVERY);
                        }
                        Verdict::Republish => {
                            republished += 1;
                            VB_REPUBLISHED.inc();
                            tracing::warn!(participant = %self.participant, %sid, sending_for = ?sending_for, attempt = republished, "virtual background track sent nothing; publishing it again");
                            // Withdrawn in the background; the next frame publishes a new one.
                            track = None;
                            let room = self.room.clone();
                            tokio::spawn(async move {
                                if let Err(e) = room.unpublish(&sid).await {
                                    tracing::debug!(%sid, error = %e, "unpublishing the silent background track");
                                }
                            });
                        }
                        Verdict::GiveUp => {
                            tracing::error!(participant = %self.participant, %sid, sending_for = ?sending_for, republished, "virtual background track still sends nothing after republishing; giving up on it");
                        }
                    }
                }
                result = self.request.changed() => {
                    if result.is_err() {
                        break;
                    }
                    request = self.request.borrow_and_update().clone();
                    tracing::debug!(participant = %self.participant, request = ?request, "virtual background settings");
                    changed = true;
                }
            }
        }
        drop(tx);
        if let Some(l) = loading.take() {
            l.abort();
        }
        if let Some(t) = track.take() {
            let _ = self.room.unpublish(&t.track.sid).await;
        }
    }

    /// The mode to use now for `request`, the image load it starts, and why a source was
    /// refused (then frames go out unprocessed).
    fn apply(
        &self,
        request: &VbRequest,
    ) -> (
        VbMode,
        Option<ImageLoad>,
        Option<background::BackgroundError>,
    ) {
        match request {
            VbRequest::Off => (VbMode::Off, None, None),
            VbRequest::Blur(s) => (VbMode::Blur(*s), None, None),
            VbRequest::Image(value) => match self.sources.check(&self.room.name, value) {
                // Until the image is in, frames go out unprocessed.
                Ok(source) => (
                    VbMode::Off,
                    Some(tokio::spawn(async move { background::load(&source).await })),
                    None,
                ),
                Err(e) => (VbMode::Off, None, Some(e)),
            },
        }
    }
}

/// Refused backgrounds are logged at most once a second per camera (with a count of those
/// left out): a participant changing its attributes 100 times a second must not flood the log.
#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    left_out: u64,
}

impl RefusalLog {
    fn warn(&mut self, participant: &str, error: &background::BackgroundError) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
        {
            self.left_out += 1;
            return;
        }
        tracing::warn!(%participant, error = %error, refusals_not_logged = self.left_out, "background image refused; frames go out unprocessed");
        self.last = Some(std::time::Instant::now());
        self.left_out = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_republishes_a_track_that_sends_nothing() {
        let s = Duration::from_secs;
        // Sending: done, however long and however often republished.
        assert_eq!(verdict(Some(s(1)), 3, 0), Verdict::Sending);
        assert_eq!(verdict(None, 1, MAX_REPUBLISHES), Verdict::Sending);
        assert_eq!(verdict(Some(s(60)), 1, MAX_REPUBLISHES), Verdict::Sending);
        // No frame in yet, or not for long: too early to tell.
        assert_eq!(verdict(None, 0, 0), Verdict::Wait);
        assert_eq!(verdict(Some(s(5)), 0, 0), Verdict::Wait);
        assert_eq!(
            verdict(Some(STALLED_AFTER - Duration::from_millis(1)), 0, 0),
            Verdict::Wait
        );
        // Frames for long enough and nothing out: republish, a bounded number of times.
        assert_eq!(verdict(Some(STALLED_AFTER), 0, 0), Verdict::Republish);
        assert_eq!(
            verdict(Some(s(15)), 0, MAX_REPUBLISHES - 1),
            Verdict::Republish
        );
        assert_eq!(verdict(Some(s(15)), 0, MAX_REPUBLISHES), Verdict::GiveUp);
        assert_eq!(
            verdict(Some(s(15)), 0, MAX_REPUBLISHES + 1),
            Verdict::GiveUp
        );
    }

    #[test]
    fn attributes_ask_for_a_background() {
        let attrs = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(VbRequest::from_attributes(&attrs(&[])), VbRequest::Off);
        assert_eq!(
            VbRequest::from_attributes(&attrs(&[(VB_MODE, "blur")])),
            VbRequest::Blur(6)
        );
        assert_eq!(
            VbRequest::from_attributes(&attrs(&[(VB_MODE, "Blur"), (VB_BLUR, "99")])),
            VbRequest::Blur(10)
        );
        assert_eq!(
            VbRequest::from_attributes(&attrs(&[(VB_MODE, "image"), (VB_IMAGE, "upload:x.png")])),
            VbRequest::Image("upload:x.png".into())
        );
        assert_eq!(
            VbRequest::from_attributes(&attrs(&[(VB_MODE, "image")])),
            VbRequest::Blur(6)
        );
        assert_eq!(
            VbRequest::from_attributes(&attrs(&[(VB_MODE, "sparkles")])),
            VbRequest::Off
        );
    }
}
