//! Captions for one microphone: feeds the segmenter, asks the recognizer, stabilises interims,
//! filters finals, publishes both and journals finals.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::filter;
use super::journal::Journal;
use super::language::CaptionLanguage;
use super::publisher::{Caption, CaptionPublisher};
use super::recognizer::{
    Hypothesis, MAX_PROMPT_CHARS, RecognizeError, Recognizer, Request, tail_chars,
};
use super::segmenter::{SegmentEvent, Segmenter, SegmenterConfig};
use super::stabilizer::Stabilizer;

type Reply = oneshot::Receiver<Result<Hypothesis, RecognizeError>>;

/// CPU seconds of interims per second of speech a speaker may cost: interims come as often as
/// this allows at the speed whisper ran the last one (finals cost about as much again).
pub const INTERIM_CPU_BUDGET: f64 = 0.12;
/// The longest interim gap the budget may ask for.
const MAX_INTERIM_GAP_MS: u32 = 4_000;
/// Silence after which a speculative final that ends a sentence is published without waiting
/// for the endpoint.
pub const SENTENCE_END_SILENCE_MS: u32 = 300;
/// Silence that ends an utterance whose speculative final came back before the endpoint and
/// does not end a sentence: a pause inside a sentence, which whisper hears better in one piece.
pub const MID_PHRASE_END_SILENCE_MS: u32 = 900;
/// Gap between one utterance's end and the next one's start (as cut: 200 ms of kept silence and
/// 300 ms of pre-roll included, so a pause of about 1.1 s) under which the next one continues
/// the same sentence and gets the words before it as its prompt.
pub const CONTINUATION_GAP_MS: u64 = 600;

/// A final transcribed ahead of the endpoint, while silence holds.
struct Speculation {
    samples: usize,
    cancel: Arc<AtomicBool>,
    /// Until the result is in.
    reply: Option<Reply>,
    result: Option<Result<Hypothesis, RecognizeError>>,
}

impl Speculation {
    /// Drops it: a decode waiting or running stops; one that ran counts as wasted.
    fn discard(self, recognizer: &Recognizer) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(Ok(h)) = self.result {
            recognizer.stats.wasted(h.cpu_ms);
        }
    }

    /// Where the final's result will come from.
    fn into_reply(self) -> Reply {
        match (self.reply, self.result) {
            (Some(reply), _) => reply,
            (None, result) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(result.unwrap_or(Err(RecognizeError::Cancelled)));
                rx
            }
        }
    }

    fn ends_a_sentence(&self) -> bool {
        matches!(&self.result, Some(Ok(h)) if ends_sentence(h))
    }
}

/// How sure whisper must be of the full stop (question, exclamation mark) that ends a
/// hypothesis for it to count as a sentence end: it punctuates the end of almost any audio, but
/// gave 0.42-0.64 to stops inside sentences of real speech cut at a pause ("Ask not!", "What
/// your country can do for you.") and 0.80-0.97 to real ends (BENCHMARKS.md, issue 15 notes).
pub const SENTENCE_END_PROBABILITY: f32 = 0.75;

/// Whether a hypothesis ends a sentence: a stop whisper is sure of.
fn ends_sentence(hypothesis: &Hypothesis) -> bool {
    hypothesis
        .end_probability
        .is_some_and(|p| p >= SENTENCE_END_PROBABILITY)
}

/// What [`SpeakerCaptions::next_result`] waited for.
pub enum Ready {
    Interim(u32, Result<Hypothesis, RecognizeError>),
    Speculation(Result<Hypothesis, RecognizeError>),
}

static NEXT_SPEAKER: AtomicU64 = AtomicU64::new(1);

/// From the end of an utterance (the endpoint) to its final caption in the room: the queue
/// and the recognition, what grows first when the machine is short of CPU.
pub static FINAL_DELAY: std::sync::LazyLock<prometheus::Histogram> =
    std::sync::LazyLock::new(|| {
        crate::metrics::histogram(
            "meeting_agent_caption_final_delay_seconds",
            "Seconds from an utterance's end to its final caption being published.",
            &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0],
        )
    });

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

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

pub struct SpeakerCaptions {
    ctx: CaptionContext,
    key: u64,
    participant: String,
    track_sid: String,
    /// When these captions began (Unix ms, base 36): segment ids stay unique in a meeting that
    /// another agent continues after this one (its utterances count from 0 again).
    epoch: String,
    /// Offset of this track's first frame from the meeting start.
    origin_ms: u64,
    segmenter: Segmenter,
    stabilizer: Stabilizer,
    utterance: u32,
    /// The interim request in flight and the utterance it belongs to.
    interim: Option<(u32, Reply)>,
    interim_published: bool,
    language: CaptionLanguage,
    speculation: Option<Speculation>,
    /// The speaker's latest finals (whisper's prompt), written by the tasks that publish them.
    recent: Arc<Mutex<String>>,
    /// Where the last utterance ended in the stream.
    last_end_ms: Option<u64>,
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
            epoch: base36(crate::captions::journal::unix_ms()),
            origin_ms,
            stabilizer: Stabilizer::default(),
            utterance: 0,
            interim: None,
            interim_published: false,
            language: CaptionLanguage::Default,
            speculation: None,
            recent: Arc::default(),
            last_end_ms: None,
        };
        captions.set_language(language);
        captions
    }

    /// Utterances from now on are recognised in `language` (the one in progress too).
    pub fn set_language(&mut self, language: CaptionLanguage) {
        if language != CaptionLanguage::Default && !self.ctx.recognizer.multilingual {
            tracing::warn!(participant = %self.participant, %language, "the caption model is English-only: captions stay in English (configure a multilingual model for other languages)");
        }
        if language != self.language {
            // The words before are no prompt for another language.
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        self.language = language;
    }

    fn request(&self, audio: Vec<f32>) -> Request {
        // The prompt only for an utterance that follows the last one after a short pause: a
        // sentence going on. Unrelated sentences decoded worse with one (BENCHMARKS.md).
        let continues = self.last_end_ms.is_some_and(|end| {
            self.segmenter.utterance_start_ms().saturating_sub(end) <= CONTINUATION_GAP_MS
        });
        let prompt = if continues {
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        } else {
            String::new()
        };
        Request {
            audio,
            language: self.language,
            prompt: (!prompt.is_empty()).then_some(prompt),
            cancel: None,
        }
    }

    fn segment_id(&self) -> String {
        format!("SG_{}_{}_{}", self.track_sid, self.epoch, self.utterance)
    }

    /// One 10 ms frame at 48 kHz (i16 scale) with its voice probability.
    pub fn push(&mut self, frame: &[f32], voice_probability: f32) {
        match self.segmenter.push(frame, voice_probability) {
            Some(SegmentEvent::Interim { audio }) => {
                // Finals waiting go first anyway; an interim now would only be superseded.
                if self.ctx.recognizer.finals_waiting() > 0 {
                    return;
                }
                tracing::debug!(participant = %self.participant, seconds = audio.len() as f32 / 16_000.0, "interim requested");
                // A request still in flight is replaced: the newest audio is what matters.
                let request = self.request(audio);
                self.interim = Some((
                    self.utterance,
                    self.ctx.recognizer.interim_request(self.key, request),
                ));
            }
            Some(SegmentEvent::Speculative { audio }) => {
                self.discard_speculation();
                let cancel = Arc::new(AtomicBool::new(false));
                let request = Request {
                    cancel: Some(cancel.clone()),
                    ..self.request(audio)
                };
                let samples = request.audio.len();
                let reply = self.ctx.recognizer.final_request(self.ctx.room(), request);
                self.speculation = Some(Speculation {
                    samples,
                    cancel,
                    reply: Some(reply),
                    result: None,
                });
            }
            Some(SegmentEvent::Resumed) => self.discard_speculation(),
            Some(event @ SegmentEvent::Final { .. }) => self.finalise(event),
            None => self.close_early(),
        }
    }

    /// Publishes the utterance now when its speculative final ends a sentence and the silence
    /// has held long enough: the endpoint would only confirm it later.
    fn close_early(&mut self) {
        if self.segmenter.silence_ms() >= SENTENCE_END_SILENCE_MS
            && self.segmenter.speculation_holds()
            && self
                .speculation
                .as_ref()
                .is_some_and(Speculation::ends_a_sentence)
            && let Some(event) = self.segmenter.finish()
        {
            self.finalise(event);
        }
    }

    fn discard_speculation(&mut self) {
        if let Some(speculation) = self.speculation.take() {
            speculation.discard(&self.ctx.recognizer);
        }
    }

    /// Finalises the utterance in progress (speaker left, track ended, captions switched off).
    pub fn finish(&mut self) {
        if let Some(event) = self.segmenter.finish() {
            self.finalise(event);
        }
        self.discard_speculation();
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
        let reply = match self.speculation.take() {
            // The silence held: the speculative final is this one.
            Some(speculation) if speculation.samples == audio.len() => {
                self.ctx.recognizer.speculation_used();
                speculation.into_reply()
            }
            other => {
                if let Some(speculation) = other {
                    speculation.discard(&self.ctx.recognizer);
                }
                let request = self.request(audio);
                self.ctx.recognizer.final_request(self.ctx.room(), request)
            }
        };
        self.last_end_ms = Some(end_ms);
        let recent = self.recent.clone();
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
        let endpointed = std::time::Instant::now();
        tokio::spawn(async move {
            let hypothesis = match reply.await {
                Ok(Ok(h)) => {
                    ctx.recognizer
                        .stats
                        .finals_transcribed
                        .fetch_add(1, Ordering::Relaxed);
                    h
                }
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
            let ended_a_sentence = ends_sentence(&hypothesis);
            let caption = Caption {
                text,
                language: hypothesis.language,
                ..caption
            };
            // The prompt carries a sentence across a cut at a pause; after a sentence ended it
            // is dropped (whisper copies a prompt's style: unrelated sentences lost their
            // punctuation).
            if caption.text.is_empty() || ended_a_sentence {
                recent.lock().unwrap_or_else(|e| e.into_inner()).clear();
            } else {
                remember(&recent, &caption.text);
            }
            if let Err(e) = ctx.publisher.publish(&caption).await {
                tracing::warn!(error = %e, "cannot publish a final caption");
            }
            FINAL_DELAY.observe(endpointed.elapsed().as_secs_f64());
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

    /// Whether a result is awaited ([`Self::next_result`] has something to wait for).
    pub fn awaits_result(&self) -> bool {
        self.interim.is_some() || self.speculation.as_ref().is_some_and(|s| s.reply.is_some())
    }

    /// Waits for the interim or the speculative final in flight (pending forever when there is
    /// none).
    pub async fn next_result(&mut self) -> Ready {
        let speculation = self.speculation.as_mut().and_then(|s| s.reply.as_mut());
        let interim = self.interim.as_mut();
        tokio::select! {
            result = async { speculation.expect("guarded").await }, if speculation.is_some() => {
                Ready::Speculation(result.unwrap_or(Err(RecognizeError::Cancelled)))
            }
            (utterance, result) = async {
                let (utterance, reply) = interim.expect("guarded");
                (*utterance, reply.await.unwrap_or(Err(RecognizeError::Superseded)))
            }, if interim.is_some() => Ready::Interim(utterance, result),
        }
    }

    /// Takes what [`Self::next_result`] returned.
    pub fn on_result(&mut self, ready: Ready) {
        match ready {
            Ready::Interim(utterance, result) => self.on_interim(utterance, result),
            Ready::Speculation(result) => {
                tracing::debug!(participant = %self.participant, result = ?result, "speculative final");
                if let Some(speculation) = self.speculation.as_mut() {
                    // A hypothesis back before the endpoint that does not end a sentence holds
                    // the utterance open a little longer. (Holding every utterance until its
                    // hypothesis is back cost 0.35 s of median latency: BENCHMARKS.md.)
                    if matches!(&result, Ok(h) if !ends_sentence(h)) {
                        self.segmenter.hold_endpoint(MID_PHRASE_END_SILENCE_MS);
                    }
                    speculation.reply = None;
                    speculation.result = Some(result);
                }
                self.close_early();
            }
        }
    }

    /// Publishes the stabilised interim text when it grew, and plans the next interim from what
    /// this one cost.
    pub fn on_interim(&mut self, utterance: u32, result: Result<Hypothesis, RecognizeError>) {
        self.interim = None;
        tracing::debug!(participant = %self.participant, utterance, current = self.utterance, result = ?result, "interim hypothesis");
        let Ok(hypothesis) = result else { return };
        self.segmenter.set_interim_gap(
            ((hypothesis.cpu_ms as f64 / INTERIM_CPU_BUDGET) as u32).min(MAX_INTERIM_GAP_MS),
        );
        if utterance != self.utterance {
            return; // the utterance was finalised meanwhile
        }
        let Some(cleaned) = filter::clean_interim(&hypothesis) else {
            return;
        };
        // Confidences belong to whisper's words: only when cleaning changed nothing.
        let confidence = if cleaned == hypothesis.text {
            &hypothesis.word_confidence[..]
        } else {
            &[]
        };
        let Some(text) = self.stabilizer.update_with_confidence(&cleaned, confidence) else {
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

/// Keeps `text` as the newest of the speaker's recent words (bounded: a prompt's worth).
fn remember(recent: &Mutex<String>, text: &str) {
    let mut recent = recent.lock().unwrap_or_else(|e| e.into_inner());
    let joined = format!("{recent} {text}");
    *recent = tail_chars(&joined, MAX_PROMPT_CHARS).to_string();
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

    #[test]
    fn recent_words_stay_bounded() {
        let recent = Mutex::new(String::new());
        remember(&recent, "Ask not what your country can do for you.");
        remember(&recent, "Ask what you can do for your country.");
        assert_eq!(
            *recent.lock().unwrap(),
            "Ask not what your country can do for you. Ask what you can do for your country."
        );
        for _ in 0..100 {
            remember(&recent, "and so, my fellow Americans,");
        }
        assert!(recent.lock().unwrap().chars().count() <= MAX_PROMPT_CHARS);
    }

    #[test]
    fn sentence_ends_are_stops_whisper_is_sure_of() {
        let h = |text: &str, end_probability| Hypothesis {
            text: text.into(),
            end_probability,
            ..Default::default()
        };
        assert!(ends_sentence(&h("Go forward ten meters.", Some(0.84))));
        assert!(!ends_sentence(&h("Ask not!", Some(0.43))));
        assert!(!ends_sentence(&h("And so, my fellow Americans,", None)));
    }

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
