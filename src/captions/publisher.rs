//! Puts captions into the room the two ways LiveKit clients read them: a text stream on
//! `lk.transcription` (attributed to the speaker, with `lk.transcribed_track_id`,
//! `lk.segment_id`, `lk.transcription_final`), and a legacy transcription packet. Offline
//! processing, tests and benchmarks take them from a channel instead.
//!
//! A final caption that cannot be sent while the room's connection is down (sending fails
//! with an internal error during a reconnect) is sent again once the room is back: after
//! `Reconnected`, at most [`RESEND_ATTEMPTS`] times within [`RESEND_WINDOW`], on a task of its
//! own (the journal and the meeting's thread do not wait for it), at most [`MAX_RESENDING`]
//! at once. A caption that still cannot be sent, or whose room was left, is logged as a
//! warning with its segment id: never lost without a trace (the journal has it anyway).
//! Interim captions are not sent again: the next one or the final supersedes them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::livekit::proto::TranscriptionSegment;
use crate::livekit::room::ConnectionState;
use crate::livekit::{Room, RoomError};
use crate::protocol;

/// How long a final caption that failed waits for its room to come back, all tries included.
pub const RESEND_WINDOW: Duration = Duration::from_secs(30);
/// How many times it is sent again.
pub const RESEND_ATTEMPTS: u32 = 3;
/// Final captions waiting to be sent again, in the whole process; a failure beyond this is
/// logged at once instead.
pub const MAX_RESENDING: usize = 64;
/// The first pause after a failure (doubling), long enough for the `Reconnecting` that
/// explains it to arrive.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

static RESENDING: AtomicUsize = AtomicUsize::new(0);

pub use crate::protocol::TRANSCRIPTION_TOPIC as TOPIC;

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
    /// Sends a caption. `Ok` for a final also when it failed but is being sent again once the
    /// room is back (the outcome is logged with its segment id).
    pub async fn publish(&self, caption: &Caption) -> Result<(), RoomError> {
        match self {
            Self::Room(room) => match publish_to_room(room, caption).await {
                Ok(()) => Ok(()),
                Err(e) if caption.is_final => resend_later(room, caption, e),
                Err(e) => Err(e),
            },
            Self::Channel(tx) => {
                let _ = tx.send(caption.clone());
                Ok(())
            }
        }
    }
}

/// A final caption failed: unless its room was left, or too many already wait, it is sent
/// again in the background once the room is connected.
fn resend_later(room: &Arc<Room>, caption: &Caption, error: RoomError) -> Result<(), RoomError> {
    let segment = caption.segment_id.clone();
    if room.connection_state() == ConnectionState::Disconnected {
        tracing::warn!(%segment, participant = %caption.participant, error = %error,
            "final caption not delivered to the room: it was left (the transcript has it)");
        return Err(error);
    }
    let Some(slot) = ResendSlot::take() else {
        tracing::warn!(%segment, participant = %caption.participant, error = %error,
            "final caption not delivered to the room: too many captions wait to be sent again");
        return Err(error);
    };
    tracing::info!(%segment, error = %error, "final caption failed; sent again once the room is back");
    let (room, caption) = (room.clone(), caption.clone());
    tokio::spawn(async move {
        let _slot = slot;
        let mut pending = PendingCaption(Some(caption.segment_id.clone()));
        let outcome = resend(
            || publish_to_room(&room, &caption),
            room.connection(),
            error.to_string(),
            RESEND_WINDOW,
            RESEND_ATTEMPTS,
        )
        .await;
        pending.0 = None;
        match outcome {
            Ok(attempt) => tracing::info!(segment = %caption.segment_id, attempt,
                "final caption delivered after the room came back"),
            Err(reason) => tracing::warn!(segment = %caption.segment_id,
                participant = %caption.participant, reason = %reason,
                "final caption not delivered to the room (the transcript has it)"),
        }
    });
    Ok(())
}

/// One of the [`MAX_RESENDING`] places for captions waiting to be sent again.
struct ResendSlot;

impl ResendSlot {
    fn take() -> Option<Self> {
        RESENDING
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_RESENDING).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for ResendSlot {
    fn drop(&mut self) {
        RESENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Warns when a resend is cut short (its runtime shut down) before it knew the outcome.
struct PendingCaption(Option<String>);

impl Drop for PendingCaption {
    fn drop(&mut self) {
        if let Some(segment) = self.0.take() {
            tracing::warn!(%segment, "final caption not delivered to the room: the agent stopped while it waited to send it again");
        }
    }
}

/// Sends again with `send` once `connection` is up, at most `attempts` times within `window`:
/// the attempt that succeeded, or why it gave up. Each try waits a growing pause first (a
/// `Reconnecting` explaining the failure may still be on its way), then for the connection.
async fn resend<F, Fut>(
    mut send: F,
    mut connection: watch::Receiver<ConnectionState>,
    first_error: String,
    window: Duration,
    attempts: u32,
) -> Result<u32, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), RoomError>>,
{
    let deadline = tokio::time::Instant::now() + window;
    let mut last = first_error;
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=attempts {
        let up = async {
            tokio::time::sleep(pause).await;
            connection
                .wait_for(|c| *c != ConnectionState::Reconnecting)
                .await
                .map(|c| *c)
        };
        match tokio::time::timeout_at(deadline, up).await {
            Err(_) => {
                return Err(format!(
                    "the room was not back within {window:?} (last error: {last})"
                ));
            }
            Ok(Err(_)) | Ok(Ok(ConnectionState::Disconnected)) => {
                return Err(format!("the room was left (last error: {last})"));
            }
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, send()).await {
            Ok(Ok(())) => return Ok(attempt),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => {
                return Err(format!(
                    "sending did not finish within {window:?} (last error: {last})"
                ));
            }
        }
        pause = (pause * 2).min(Duration::from_secs(4));
    }
    Err(format!("{attempts} more tries failed (last error: {last})"))
}

async fn publish_to_room(room: &Room, caption: &Caption) -> Result<(), RoomError> {
    let attributes: HashMap<String, String> = [
        (protocol::TRANSCRIBED_TRACK_ID, caption.track_sid.clone()),
        (protocol::SEGMENT_ID, caption.segment_id.clone()),
        (protocol::TRANSCRIPTION_FINAL, caption.is_final.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn failure() -> RoomError {
        RoomError::Operation {
            operation: "send text",
            message: "internal error".into(),
        }
    }

    /// A send that fails while the connection is not up, and records the state it saw.
    fn fake_send(
        state: watch::Receiver<ConnectionState>,
        seen: Arc<Mutex<Vec<ConnectionState>>>,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<(), RoomError>> + Send>> {
        move || {
            let now = *state.borrow();
            seen.lock().unwrap().push(now);
            Box::pin(async move {
                if now == ConnectionState::Connected {
                    Ok(())
                } else {
                    Err(failure())
                }
            })
        }
    }

    #[tokio::test]
    async fn a_final_that_failed_while_reconnecting_is_sent_after_reconnected() {
        let (tx, rx) = watch::channel(ConnectionState::Connected);
        let seen = Arc::new(Mutex::new(Vec::new()));
        // The failure came just before the Reconnecting event; the room is back 600 ms later.
        let flip = tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send_replace(ConnectionState::Reconnecting);
                tokio::time::sleep(Duration::from_millis(600)).await;
                tx.send_replace(ConnectionState::Connected);
            }
        });
        let outcome = resend(
            fake_send(rx.clone(), seen.clone()),
            rx,
            "internal error".into(),
            Duration::from_secs(5),
            3,
        )
        .await;
        flip.await.unwrap();
        assert_eq!(outcome, Ok(1), "sent on the first retry, after Reconnected");
        assert_eq!(*seen.lock().unwrap(), vec![ConnectionState::Connected]);
    }

    #[tokio::test]
    async fn a_room_that_was_left_gives_up_at_once() {
        let (tx, rx) = watch::channel(ConnectionState::Reconnecting);
        let seen = Arc::new(Mutex::new(Vec::new()));
        tx.send_replace(ConnectionState::Disconnected);
        let started = std::time::Instant::now();
        let outcome = resend(
            fake_send(rx.clone(), seen.clone()),
            rx,
            "internal error".into(),
            Duration::from_secs(5),
            3,
        )
        .await;
        let reason = outcome.unwrap_err();
        assert!(
            reason.contains("left") && reason.contains("internal error"),
            "{reason}"
        );
        assert!(
            seen.lock().unwrap().is_empty(),
            "nothing sent into a left room"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_room_that_never_comes_back_gives_up_within_the_window() {
        let (_tx, rx) = watch::channel(ConnectionState::Reconnecting);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = std::time::Instant::now();
        let outcome = resend(
            fake_send(rx.clone(), seen.clone()),
            rx,
            "internal error".into(),
            Duration::from_millis(800),
            3,
        )
        .await;
        let reason = outcome.unwrap_err();
        assert!(reason.contains("not back within"), "{reason}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(3));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn tries_are_bounded() {
        // Connected, but every send fails: exactly `attempts` more tries.
        let (_tx, rx) = watch::channel(ConnectionState::Connected);
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let outcome = resend(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(failure()) }
            },
            rx,
            "internal error".into(),
            Duration::from_secs(10),
            2,
        )
        .await;
        assert!(outcome.unwrap_err().contains("2 more tries failed"));
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn resend_slots_are_bounded() {
        let slots: Vec<ResendSlot> = std::iter::from_fn(ResendSlot::take)
            .take(MAX_RESENDING + 10)
            .collect();
        assert_eq!(slots.len(), MAX_RESENDING);
        assert!(ResendSlot::take().is_none());
        drop(slots);
        assert!(ResendSlot::take().is_some());
    }
}
