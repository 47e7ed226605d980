//! One whisper model for the whole process and a scheduler in front of it. Finals are served
//! first and never dropped; interim requests keep only the newest per speaker and are served
//! round-robin, so under load interim cadence degrades (counted) while finals keep flowing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use thiserror::Error;
use tokio::sync::oneshot;
use whisper_rs::{FullParams, SamplingStrategy};

use super::language::CaptionLanguage;
use super::model::WhisperModel;

#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub text: String,
    /// Highest no-speech probability whisper gave a segment of this audio.
    pub no_speech_probability: f32,
    pub language: String,
}

#[derive(Debug, Error, Clone)]
pub enum RecognizeError {
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("interim request superseded by a newer one")]
    Superseded,
}

/// Counters for capacity monitoring.
#[derive(Debug, Default)]
pub struct RecognizerStats {
    /// Finals asked for; every one is transcribed (`finals` catches up once speech stops).
    pub finals_requested: AtomicU64,
    pub finals: AtomicU64,
    pub interims: AtomicU64,
    /// Interim requests replaced before they ran: each is one step of degraded cadence.
    pub interims_superseded: AtomicU64,
    pub audio_ms: AtomicU64,
    pub busy_ms: AtomicU64,
    /// Finals run with a fitted encoder context because more finals were waiting: the second
    /// step of degradation, a small cost in accuracy instead of a growing delay.
    pub finals_fitted: AtomicU64,
}

/// How much of whisper's 30 s encoder window a transcription uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Context {
    /// The whole window, as whisper was trained: finals.
    Full,
    /// The audio's length plus `margin` positions (50 per second): several times faster for
    /// short audio at a small cost in accuracy (interims; finals with a backlog).
    Fitted { margin: i32 },
}

/// Interims: speed over accuracy, they are replaced soon anyway.
const INTERIM_CONTEXT: Context = Context::Fitted { margin: 128 };
/// Finals while others wait: a wide margin keeps most of the full window's accuracy at about 0.6
/// of its cost for a few seconds of speech.
const BACKLOG_FINAL_CONTEXT: Context = Context::Fitted { margin: 768 };

struct Job {
    audio: Vec<f32>,
    language: CaptionLanguage,
    reply: oneshot::Sender<Result<Hypothesis, RecognizeError>>,
}

#[derive(Default)]
struct Queue {
    finals: VecDeque<Job>,
    interims: HashMap<u64, Job>,
    turn: VecDeque<u64>,
    closed: bool,
}

pub struct Recognizer {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    pub stats: Arc<RecognizerStats>,
    /// The language when a microphone asks for none; `None` detects.
    pub language: Option<String>,
    /// English-only models decode English whatever is asked.
    pub multilingual: bool,
}

#[derive(Debug, Clone)]
pub struct RecognizerOptions {
    /// `None`: detect per utterance (multilingual models only).
    pub language: Option<String>,
    pub translate: bool,
    pub threads: usize,
}

impl Recognizer {
    /// Starts the inference thread that owns the model's decoding state.
    pub fn start(
        model: WhisperModel,
        options: RecognizerOptions,
    ) -> Result<Arc<Self>, RecognizeError> {
        let mut state = model
            .context
            .create_state()
            .map_err(|e| RecognizeError::Whisper(e.to_string()))?;
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let stats: Arc<RecognizerStats> = Arc::default();
        let language = if model.multilingual {
            options.language.clone()
        } else {
            Some("en".to_string())
        };
        let multilingual = model.multilingual;
        let (q, s, lang) = (queue.clone(), stats.clone(), language.clone());
        std::thread::Builder::new()
            .name("whisper".into())
            .spawn(move || {
                let _model = model; // the context outlives the state
                while let Some((job, kind)) = next_job(&q) {
                    let started = std::time::Instant::now();
                    let is_final = kind != JobKind::Interim;
                    let context = match kind {
                        JobKind::Final => Context::Full,
                        JobKind::FinalWithBacklog => {
                            s.finals_fitted.fetch_add(1, Ordering::Relaxed);
                            BACKLOG_FINAL_CONTEXT
                        }
                        JobKind::Interim => INTERIM_CONTEXT,
                    };
                    let language = if multilingual {
                        job.language.resolve(lang.as_deref())
                    } else {
                        Some("en")
                    };
                    let result = transcribe(
                        &mut state,
                        &job.audio,
                        language,
                        options.translate,
                        options.threads,
                        context,
                    );
                    s.busy_ms
                        .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    s.audio_ms
                        .fetch_add(job.audio.len() as u64 / 16, Ordering::Relaxed);
                    let counter = if is_final { &s.finals } else { &s.interims };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| RecognizeError::Whisper(e.to_string()))?;
        Ok(Arc::new(Self {
            queue,
            stats,
            language,
            multilingual,
        }))
    }

    /// Transcribes a finished utterance (16 kHz mono, [-1, 1]). Served before any interim.
    pub fn final_(&self, audio: Vec<f32>) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        self.final_in(audio, CaptionLanguage::Default)
    }

    /// [`Self::final_`] in the language a microphone asked for.
    pub fn final_in(
        &self,
        audio: Vec<f32>,
        language: CaptionLanguage,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        let (reply, rx) = oneshot::channel();
        self.stats.finals_requested.fetch_add(1, Ordering::Relaxed);
        let (lock, cv) = &*self.queue;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .finals
            .push_back(Job {
                audio,
                language,
                reply,
            });
        cv.notify_one();
        rx
    }

    /// Transcribes an utterance in progress for `speaker`, in the language it asked for;
    /// replaces that speaker's pending request.
    pub fn interim(
        &self,
        speaker: u64,
        audio: Vec<f32>,
        language: CaptionLanguage,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        let (reply, rx) = oneshot::channel();
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job {
            audio,
            language,
            reply,
        };
        if let Some(old) = q.interims.insert(speaker, job) {
            self.stats
                .interims_superseded
                .fetch_add(1, Ordering::Relaxed);
            let _ = old.reply.send(Err(RecognizeError::Superseded));
        } else {
            q.turn.push_back(speaker);
        }
        cv.notify_one();
        rx
    }
}

impl Drop for Recognizer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        cv.notify_all();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum JobKind {
    Final,
    /// A final with more finals waiting behind it.
    FinalWithBacklog,
    Interim,
}

fn next_job(queue: &(Mutex<Queue>, Condvar)) -> Option<(Job, JobKind)> {
    let (lock, cv) = queue;
    let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = q.finals.pop_front() {
            let kind = if q.finals.is_empty() {
                JobKind::Final
            } else {
                JobKind::FinalWithBacklog
            };
            return Some((job, kind));
        }
        while let Some(speaker) = q.turn.pop_front() {
            if let Some(job) = q.interims.remove(&speaker) {
                return Some((job, JobKind::Interim));
            }
        }
        if q.closed {
            return None;
        }
        q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

fn transcribe(
    state: &mut whisper_rs::WhisperState,
    audio: &[f32],
    language: Option<&str>,
    translate: bool,
    threads: usize,
    context: Context,
) -> Result<Hypothesis, RecognizeError> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(threads as i32);
    params.set_language(language);
    params.set_detect_language(false);
    params.set_translate(translate);
    params.set_no_context(true);
    params.set_no_timestamps(true);
    params.set_single_segment(false);
    params.set_suppress_blank(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    if let Context::Fitted { margin } = context {
        // 1500 encoder positions cover 30 s: 50 per second, plus the margin.
        let positions = (audio.len() as f32 / 16_000.0 * 50.0) as i32 + margin;
        params.set_audio_ctx(positions.min(1500));
    }
    // whisper needs at least a second of input; pad short utterances with silence.
    let padded;
    let input = if audio.len() < 16_000 + 1600 {
        padded = [audio, &vec![0.0; 16_000 + 1600 - audio.len()]].concat();
        &padded[..]
    } else {
        audio
    };
    state
        .full(params, input)
        .map_err(|e| RecognizeError::Whisper(e.to_string()))?;
    let mut text = String::new();
    let mut no_speech = 0f32;
    for segment in state.as_iter() {
        text.push_str(
            &segment
                .to_str_lossy()
                .map_err(|e| RecognizeError::Whisper(e.to_string()))?,
        );
        no_speech = no_speech.max(segment.no_speech_probability());
    }
    let language = whisper_rs::get_lang_str(state.full_lang_id_from_state())
        .unwrap_or("en")
        .to_string();
    Ok(Hypothesis {
        text: text.trim().to_string(),
        no_speech_probability: no_speech,
        language,
    })
}
