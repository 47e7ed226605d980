//! Captions for one microphone: feeds the segmenter, asks the recognizer, stabilises interims,
//! filters finals, publishes both and journals finals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use super::filter;
use super::journal::Journal;
use super::language::CaptionLanguage;
use super::publisher::{Caption, CaptionPublisher};
use super::recognizer::{Hypothesis, RecognizeError, Recognizer};
use super::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use super::stabilizer::Stabilizer;

type Reply = oneshot::Receiver<Result<Hypothesis, RecognizeError>>;

static NEXT_SPEAKER: AtomicU64 = AtomicU64::new(1);

/// What a room's microphones share for captioning.
#[derive(Clone)]
pub struct CaptionContext {
    pub recognizer: Arc<Recognizer>,
    pub publisher: CaptionPublisher,
    pub journal: Option<Journal>,
    pub segmenter: SegmenterConfig,
    /// Where finals go besides the room and the journal: the meeting's thread in the
    /// messaging store, when there is one.
    pub finals: Option<FinalsSink>,
}

/// Takes each final caption as a transcript segment.
pub type FinalsSink = Arc<dyn Fn(crate::store::Segment) + Send + Sync>;

impl CaptionContext {
    /// The room these captions are for: its finals queue in the recognizer.
    pub fn room(&self) -> &str {
        match (&self.publisher, &self.journal) {
            (CaptionPublisher::Room(room), _) => &room.name,
            (_, Some(journal)) => journal.room(),
            _ => "",
        }
    }
}

pub struct SpeakerCaptions {
    ctx: CaptionContext,
    key: u64,
    participant: String,
    track_sid: String,
    /// Offset of this track's first frame from the meeting start.
    origin_ms: u64,
    segmenter: Segmenter,
    stabilizer: Stabilizer,
    utterance: u32,
    /// The interim request in flight and the utterance it belongs to.
    interim: Option<(u32, Reply)>,
    interim_published: bool,
    language: CaptionLanguage,
}

impl SpeakerCaptions {
    pub fn new(
        ctx: CaptionContext,
        participant: &str,
        track_sid: &str,
        origin_ms: u64,
        language: CaptionLanguage,
    ) -> Self {
        let mut captions = Self {
            segmenter: Segmenter::new(ctx.segmenter.clone()),
            ctx,
            key: NEXT_SPEAKER.fetch_add(1, Ordering::Relaxed),
            participant: participant.to_string(),
            track_sid: track_sid.to_string(),
            origin_ms,
            stabilizer: Stabilizer::default(),
            utterance: 0,
            interim: None,
            interim_published: false,
            language: CaptionLanguage::Default,
        };
        captions.set_language(language);
        captions
    }

    /// Utterances from now on are recognised in `language` (the one in progress too).
    pub fn set_language(&mut self, language: CaptionLanguage) {
        if language != CaptionLanguage::Default && !self.ctx.recognizer.multilingual {
            tracing::warn!(participant = %self.participant, %language, "the caption model is English-only: captions stay in English (configure a multilingual model for other languages)");
        }
        self.language = language;
    }

    fn segment_id(&self) -> String {
        format!("SG_{}_{}", self.track_sid, self.utterance)
    }

    /// One 10 ms frame at 48 kHz (i16 scale) with its voice probability.
    pub fn push(&mut self, frame: &[f32], voice_probability: f32) {
        match self.segmenter.push(frame, voice_probability) {
            Some(SegmentEvent::Interim { audio }) => {
                tracing::debug!(participant = %self.participant, seconds = audio.len() as f32 / 16_000.0, "interim requested");
                // A request still in flight is replaced: the newest audio is what matters.
                self.interim = Some((
                    self.utterance,
                    self.ctx.recognizer.interim(self.key, audio, self.language),
                ));
            }
            Some(event @ SegmentEvent::Final { .. }) => self.finalise(event),
            None => {}
        }
    }

    /// Finalises the utterance in progress (speaker left, track ended, captions switched off).
    pub fn finish(&mut self) {
        if let Some(event) = self.segmenter.finish() {
            self.finalise(event);
        }
    }

    fn finalise(&mut self, event: SegmentEvent) {
        let SegmentEvent::Final {
            audio,
            start_ms,
            end_ms,
            mean_voice_probability,
        } = event
        else {
            return;
        };
        let reply = self
            .ctx
            .recognizer
            .final_in(self.ctx.room(), audio, self.language);
        let caption = Caption {
            participant: self.participant.clone(),
            track_sid: self.track_sid.clone(),
            segment_id: self.segment_id(),
            text: String::new(),
            is_final: true,
            start_ms: self.origin_ms + start_ms,
            end_ms: self.origin_ms + end_ms,
            language: self.ctx.recognizer.language.clone().unwrap_or_default(),
        };
        let (ctx, had_interim) = (self.ctx.clone(), self.interim_published);
        let seconds = (end_ms - start_ms) as f32 / 1000.0;
        // Finals run on their own task so audio keeps flowing; one the recognizer refuses (its
        // queue is full) is logged and journaled without text.
        tokio::spawn(async move {
            let hypothesis = match reply.await {
                Ok(Ok(h)) => h,
                Ok(Err(RecognizeError::Refused)) => {
                    let room = ctx.room().to_string();
                    return refused(&room, &ctx.publisher, ctx.journal, caption, had_interim).await;
                }
                Ok(Err(e)) => {
                    return tracing::error!(error = %e, segment = %caption.segment_id, "final caption failed");
                }
                Err(_) => {
                    return tracing::error!(segment = %caption.segment_id, "recognizer stopped before a final caption");
                }
            };
            let text = match filter::accept(&hypothesis, mean_voice_probability, seconds) {
                Ok(text) => text,
                Err(reason) => {
                    tracing::debug!(reason, text = %hypothesis.text, "caption dropped");
                    if !had_interim {
                        return;
                    }
                    String::new() // closes the interim segment the client is showing
                }
            };
            let caption = Caption {
                text,
                language: hypothesis.language,
                ..caption
            };
            if let Err(e) = ctx.publisher.publish(&caption).await {
                tracing::warn!(error = %e, "cannot publish a final caption");
            }
            if let (Some(finals), false) = (&ctx.finals, caption.text.is_empty()) {
                finals(crate::store::Segment {
                    key: caption.segment_id.clone(),
                    speaker: caption.participant.clone(),
                    text: caption.text.clone(),
                    start_ms: caption.start_ms as i64,
                    end_ms: caption.end_ms as i64,
                });
            }
            if let (Some(journal), false) = (ctx.journal.clone(), caption.text.is_empty()) {
                let c = caption.clone();
                match tokio::task::spawn_blocking(move || journal.append(&c)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "transcript journal write failed"),
                    Err(e) => tracing::error!(error = %e, "transcript journal task failed"),
                }
            }
            tracing::info!(participant = %caption.participant, segment = %caption.segment_id, text = %caption.text, "caption");
        });
        self.utterance += 1;
        self.stabilizer.reset();
        self.interim = None;
        self.interim_published = false;
    }

    pub fn has_interim(&self) -> bool {
        self.interim.is_some()
    }

    /// Waits for the interim in flight (pending forever when there is none).
    pub async fn interim_ready(&mut self) -> (u32, Result<Hypothesis, RecognizeError>) {
        match self.interim.as_mut() {
            Some((utterance, reply)) => {
                let result = reply.await.unwrap_or(Err(RecognizeError::Superseded));
                (*utterance, result)
            }
            None => std::future::pending().await,
        }
    }

    /// Publishes the stabilised interim text when it grew.
    pub fn on_interim(&mut self, utterance: u32, result: Result<Hypothesis, RecognizeError>) {
        self.interim = None;
        tracing::debug!(participant = %self.participant, utterance, current = self.utterance, result = ?result, "interim hypothesis");
        let Ok(hypothesis) = result else { return };
        if utterance != self.utterance {
            return; // the utterance was finalised meanwhile
        }
        let Some(cleaned) = filter::clean_interim(&hypothesis) else {
            return;
        };
        let Some(text) = self.stabilizer.update(&cleaned) else {
            return;
        };
        let caption = Caption {
            participant: self.participant.clone(),
            track_sid: self.track_sid.clone(),
            segment_id: self.segment_id(),
            text,
            is_final: false,
            start_ms: self.origin_ms,
            end_ms: self.origin_ms,
            language: hypothesis.language,
        };
        self.interim_published = true;
        let publisher = self.ctx.publisher.clone();
        tracing::debug!(participant = %caption.participant, segment = %caption.segment_id, text = %caption.text, "interim caption");
        tokio::spawn(async move {
            if let Err(e) = publisher.publish(&caption).await {
                tracing::warn!(error = %e, "cannot publish an interim caption");
            }
        });
    }
}

/// A final the recognizer refused: logged with its segment id, the interim the room shows
/// closed, and its times kept in the journal as untranscribed.
async fn refused(
    room: &str,
    publisher: &CaptionPublisher,
    journal: Option<Journal>,
    caption: Caption,
    had_interim: bool,
) {
    tracing::warn!(
        %room,
        participant = %caption.participant,
        segment = %caption.segment_id,
        start_ms = caption.start_ms,
        end_ms = caption.end_ms,
        "final caption refused: the recognizer's queue is full; kept in the journal as untranscribed"
    );
    if had_interim && let Err(e) = publisher.publish(&caption).await {
        tracing::warn!(error = %e, "cannot close an interim caption");
    }
    if let Some(journal) = journal {
        match tokio::task::spawn_blocking(move || journal.append_untranscribed(&caption)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "transcript journal write failed"),
            Err(e) => tracing::error!(error = %e, "transcript journal task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_final_closes_the_interim_and_is_journaled_untranscribed() {
        let dir = std::env::temp_dir().join(format!("speaker-refused-{}", std::process::id()));
        let journal = Journal::open(&dir, "busy", 3).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let publisher = CaptionPublisher::Channel(tx);
        let caption = Caption {
            participant: "eve".into(),
            track_sid: "TR_9".into(),
            segment_id: "SG_TR_9_4".into(),
            text: String::new(),
            is_final: true,
            start_ms: 2_000,
            end_ms: 5_000,
            language: "en".into(),
        };
        refused(
            "busy",
            &publisher,
            Some(journal.clone()),
            caption.clone(),
            true,
        )
        .await;
        assert_eq!(
            rx.try_recv().unwrap(),
            caption,
            "the interim segment is closed"
        );
        // Without an interim shown, nothing is published.
        refused("busy", &publisher, None, caption.clone(), false).await;
        assert!(rx.try_recv().is_err());
        let entries = Journal::read(&journal.path).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(entries[0].untranscribed);
        assert_eq!(entries[0].segment_id, "SG_TR_9_4");
        std::fs::remove_dir_all(dir).ok();
    }
}
