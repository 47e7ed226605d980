//! One whisper model for the whole process and a scheduler in front of it. Finals are served
//! before interims; interim requests keep only the newest per speaker and are served
//! round-robin, so under load interim cadence degrades (counted) while finals keep flowing.
//!
//! **Finals queue policy.** Finals wait in one queue per room, and rooms take turns
//! (round-robin, one final per turn), so a busy room delays another by at most one final per
//! turn. The queue is bounded: at most [`MAX_QUEUED_FINALS_PER_ROOM`] finals per room and
//! [`MAX_QUEUED_FINALS`] in all (adjustable with [`Recognizer::set_final_limits`]). Asking for a
//! final never blocks. When the room's own queue is full, the new final is refused at once
//! ([`RecognizeError::Refused`]); when only the process-wide queue is full, a room that holds
//! fewer waiting finals than the fullest room still gets in, and the newest final of the fullest
//! room is refused in its place (so no room can crowd quiet rooms out); otherwise the new final
//! is refused. Every refusal is counted (`finals_refused`, `/metrics`
//! `meeting_agent_caption_finals_refused_total`); the caller logs the segment id and keeps the
//! utterance's times in the journal as untranscribed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use thiserror::Error;
use tokio::sync::oneshot;
use whisper_rs::{FullParams, SamplingStrategy};

use super::language::CaptionLanguage;
use super::model::WhisperModel;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hypothesis {
    pub text: String,
    /// Highest no-speech probability whisper gave a segment of this audio.
    pub no_speech_probability: f32,
    pub language: String,
    /// Per word of `text` (split at whitespace): the lowest probability whisper gave any of its
    /// tokens. Empty when tokens and words could not be lined up.
    pub word_confidence: Vec<f32>,
    /// What the transcription cost: wall time times the threads it ran on (ggml's threads spin
    /// while they wait, so that is the CPU the machine gave it).
    pub cpu_ms: u64,
    /// The probability whisper gave the text's last token when that is a full stop, question or
    /// exclamation mark: whisper ends almost every piece of audio with one, but is sure of it
    /// only where a sentence really ends.
    pub end_probability: Option<f32>,
}

#[derive(Debug, Error, Clone)]
pub enum RecognizeError {
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("interim request superseded by a newer one")]
    Superseded,
    /// The finals queue was full (see the module's policy): not transcribed.
    #[error("final refused: the recognizer's queue is full")]
    Refused,
    /// A speculative request its speaker cancelled (speech went on).
    #[error("request cancelled")]
    Cancelled,
    /// The recognizer was dropped before the request ran.
    #[error("the recognizer stopped")]
    Stopped,
}

/// Finals one room may have waiting before its next one is refused.
pub const MAX_QUEUED_FINALS_PER_ROOM: usize = 16;
/// Finals all rooms together may have waiting.
pub const MAX_QUEUED_FINALS: usize = 128;

/// Finals refused because the queue was full, process-wide (for `/metrics`).
pub static FINALS_REFUSED: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(
    || {
        crate::metrics::counter(
            "meeting_agent_caption_finals_refused_total",
            "Final captions refused (not transcribed, journaled as untranscribed) because the recognizer's queue was full.",
        )
    },
);
/// Finals waiting for the model now, process-wide (for `/metrics`).
pub static FINALS_QUEUED: std::sync::LazyLock<prometheus::IntGauge> =
    std::sync::LazyLock::new(|| {
        crate::metrics::gauge(
            "meeting_agent_caption_finals_queued",
            "Final captions waiting for the speech model.",
        )
    });

/// Counters for capacity monitoring.
#[derive(Debug, Default)]
pub struct RecognizerStats {
    /// Finals asked for; every one is transcribed (`finals_transcribed` catches up once
    /// speech stops).
    pub finals_requested: AtomicU64,
    /// Finals whose text came back to the speaker that asked: counted where the answer
    /// arrives, so a speculative final counts only when it became the real one.
    pub finals_transcribed: AtomicU64,
    /// Final decodes run, speculative ones included (those thrown away after they ran too).
    pub finals: AtomicU64,
    pub interims: AtomicU64,
    /// Interim requests replaced before they ran: each is one step of degraded cadence.
    pub interims_superseded: AtomicU64,
    pub audio_ms: AtomicU64,
    pub busy_ms: AtomicU64,
    /// Finals run with a fitted encoder context because more finals were waiting: the second
    /// step of degradation, a small cost in accuracy instead of a growing delay.
    pub finals_fitted: AtomicU64,
    /// Finals refused because the queue was full (never transcribed).
    pub finals_refused: AtomicU64,
    /// CPU time of all transcriptions (wall time x threads), speculative ones included.
    pub cpu_ms: AtomicU64,
    /// Speculative finals asked for (transcribed while silence began, before the endpoint).
    pub speculative: AtomicU64,
    /// Speculative finals dropped because their speaker went on: before they ran (free) ...
    pub speculative_cancelled: AtomicU64,
    /// ... and the CPU time of those that had run or were running (the waste of speculation).
    pub speculative_wasted_cpu_ms: AtomicU64,
}

impl RecognizerStats {
    /// A speculative result its speaker threw away after it ran.
    pub fn wasted(&self, cpu_ms: u64) {
        self.speculative_wasted_cpu_ms
            .fetch_add(cpu_ms, Ordering::Relaxed);
    }
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
/// Finals with a fitted window: the same margin. Narrower ones were measured (BENCHMARKS.md,
/// caption_final_window): 256 and 512 positions let whisper loop on short utterances of real
/// speech ("Five Five Five ..."), 768 kept the full window's accuracy at 0.6 of its cost.
const FINAL_CONTEXT: Context = BACKLOG_FINAL_CONTEXT;

/// The longest prompt (previous finals of the same speaker) a request carries, in characters:
/// about 50 tokens, enough to carry a sentence across a cut at a pause, little decoder work.
pub const MAX_PROMPT_CHARS: usize = 224;

/// Sampled candidates when a final falls back to a higher temperature (whisper's best_of).
const FALLBACK_CANDIDATES: i32 = 5;

/// What to transcribe, and how.
#[derive(Default)]
pub struct Request {
    /// 16 kHz mono, [-1, 1].
    pub audio: Vec<f32>,
    pub language: CaptionLanguage,
    /// The speaker's words just before this audio (whisper's prompt), so a sentence cut at a
    /// pause reads on instead of starting over. Cut to [`MAX_PROMPT_CHARS`].
    pub prompt: Option<String>,
    /// Set by the caller to drop the request while it waits (a speculative final whose
    /// speaker went on talking); one already running finishes and answers `Cancelled`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Request {
    pub fn new(audio: Vec<f32>, language: CaptionLanguage) -> Self {
        Self {
            audio,
            language,
            ..Default::default()
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Hypothesis, RecognizeError>>,
}

/// The finals waiting, one queue per room, served round-robin between rooms and bounded per
/// room and in all (the module's policy).
struct Finals<T> {
    rooms: HashMap<String, VecDeque<T>>,
    /// Rooms with finals waiting, in the order they are served next.
    turn: VecDeque<String>,
    len: usize,
    per_room: usize,
    total: usize,
}

impl<T> Finals<T> {
    fn new(per_room: usize, total: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            turn: VecDeque::new(),
            len: 0,
            per_room: per_room.max(1),
            total: total.max(1),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Queues `item` for `room`. `Err` holds what was refused: the item itself when its room is
    /// full (or the queue is full and no room holds more than this one), or the newest item of
    /// the fullest room that made way for it.
    fn push(&mut self, room: &str, item: T) -> Result<(), T> {
        let held = self.rooms.get(room).map_or(0, VecDeque::len);
        if held >= self.per_room {
            return Err(item);
        }
        let mut displaced = None;
        if self.len >= self.total {
            // The fullest room (among equals, the one served last) makes way, if it holds more
            // than this room will after the push.
            let fullest = self
                .turn
                .iter()
                .max_by_key(|r| self.rooms.get(*r).map_or(0, VecDeque::len))
                .cloned();
            match fullest {
                Some(f) if self.rooms.get(&f).map_or(0, VecDeque::len) > held + 1 => {
                    let queue = self.rooms.get_mut(&f).expect("a room in turn has a queue");
                    displaced = queue.pop_back();
                    self.len -= 1;
                }
                _ => return Err(item),
            }
        }
        let queue = self.rooms.entry(room.to_string()).or_default();
        if queue.is_empty() {
            self.turn.push_back(room.to_string());
        }
        queue.push_back(item);
        self.len += 1;
        displaced.map_or(Ok(()), Err)
    }

    /// The next final: the oldest of the room whose turn it is.
    fn pop(&mut self) -> Option<T> {
        let room = self.turn.pop_front()?;
        let queue = self.rooms.get_mut(&room)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.rooms.remove(&room);
        } else {
            self.turn.push_back(room);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }
}

struct Queue {
    finals: Finals<Job>,
    interims: HashMap<u64, Job>,
    turn: VecDeque<u64>,
    closed: bool,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            finals: Finals::new(MAX_QUEUED_FINALS_PER_ROOM, MAX_QUEUED_FINALS),
            interims: HashMap::new(),
            turn: VecDeque::new(),
            closed: false,
        }
    }
}

pub struct Recognizer {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    /// Set when the recognizer is dropped: the decode under way stops at its next step.
    abort: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Disconnects when the thread ends (its sender is dropped, also by a panic).
    thread_ended: Mutex<std::sync::mpsc::Receiver<()>>,
    pub stats: Arc<RecognizerStats>,
    /// The language when a microphone asks for none; `None` detects.
    pub language: Option<String>,
    /// English-only models decode English whatever is asked.
    pub multilingual: bool,
}

pub use crate::config::FinalWindow;

#[derive(Debug, Clone, Default)]
pub struct RecognizerOptions {
    /// `None`: detect per utterance (multilingual models only).
    pub language: Option<String>,
    pub translate: bool,
    pub threads: usize,
    pub final_window: FinalWindow,
}

/// CPU milliseconds whisper needs per second of audio here, for fitted windows (interims,
/// fitted finals): measured once at start and then tracked over recent jobs, so callers plan
/// their requests from the speed the machine has now (the same machine kind has run whisper
/// three times slower from one day to the next).
#[derive(Debug)]
pub struct Speed {
    /// f64 bits.
    cpu_ms_per_audio_s: AtomicU64,
}

/// How much one job moves the tracked speed.
const SPEED_SMOOTHING: f64 = 0.2;

/// The speed whisper ran at, process-wide (for `/metrics`).
pub static SPEED_GAUGE: std::sync::LazyLock<prometheus::Gauge> = std::sync::LazyLock::new(|| {
    crate::metrics::float_gauge(
        "meeting_agent_caption_cpu_seconds_per_audio_second",
        "CPU seconds whisper needs per second of audio on this machine now (fitted windows, tracked).",
    )
});

impl Default for Speed {
    fn default() -> Self {
        // Until measured: tiny.en on one core of a slow machine.
        Self {
            cpu_ms_per_audio_s: AtomicU64::new(300f64.to_bits()),
        }
    }
}

impl Speed {
    pub fn cpu_ms_per_audio_s(&self) -> f64 {
        f64::from_bits(self.cpu_ms_per_audio_s.load(Ordering::Relaxed))
    }

    /// Folds in one job (`first`: replaces the default instead).
    fn record(&self, cpu_ms: u64, audio_ms: u64, first: bool) {
        if audio_ms == 0 {
            return;
        }
        let sample = cpu_ms as f64 * 1000.0 / audio_ms as f64;
        let value = if first {
            sample
        } else {
            let old = self.cpu_ms_per_audio_s();
            old + SPEED_SMOOTHING * (sample - old)
        };
        self.cpu_ms_per_audio_s
            .store(value.to_bits(), Ordering::Relaxed);
        SPEED_GAUGE.set(value / 1000.0);
    }
}

/// Audio for the speed measurement at start: 3 s of faint noise (the encoder's cost does not
/// depend on what it hears; the decoder's little does).
fn calibration_audio() -> Vec<f32> {
    let mut seed = 0x2545_f491_u32;
    (0..48_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 - 0.5) * 1e-3
        })
        .collect()
}

impl Recognizer {
    /// Starts the inference thread that owns the model's decoding state. Its first job measures
    /// whisper's speed on this machine.
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
        let abort: Arc<AtomicBool> = Arc::default();
        let (q, s, lang, stop) = (
            queue.clone(),
            stats.clone(),
            language.clone(),
            abort.clone(),
        );
        let (ended, thread_ended) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("whisper".into())
            .spawn(move || {
                let _ended = ended;
                let eot = model.context.token_eot();
                let model = model; // the context outlives the states
                // Finals that detect their language decode on a state of their own (made on
                // first use): whisper.cpp detects with the encoder window the state's previous
                // decode used (it applies the new one after detecting), and a fitted window
                // made the base model hear German as Yiddish.
                let mut detecting: Option<whisper_rs::WhisperState> = None;
                let mut threads = super::threads::ThreadBudget::new(options.threads);
                let sp = Speed::default();
                let decode = Decode {
                    translate: options.translate,
                    eot,
                    abort: &stop,
                };
                let calibration = calibration_audio();
                let started = std::time::Instant::now();
                let n = threads.for_next_job();
                if decode
                    .run(
                        &mut state,
                        &calibration,
                        None,
                        Some("en"),
                        n,
                        INTERIM_CONTEXT,
                    )
                    .is_ok()
                {
                    let cpu_ms = started.elapsed().as_millis() as u64 * n as u64;
                    sp.record(cpu_ms, 3000, true);
                    tracing::info!(
                        cpu_s_per_audio_s = sp.cpu_ms_per_audio_s() / 1000.0,
                        threads = n,
                        "whisper speed measured"
                    );
                }
                threads.job_ended();
                while let Some((job, kind)) = next_job(&q, &s) {
                    let started = std::time::Instant::now();
                    let is_final = kind != JobKind::Interim;
                    let Job { request, reply } = job;
                    let language = if multilingual {
                        request.language.resolve(lang.as_deref())
                    } else {
                        Some("en")
                    };
                    let detects = language.is_none() && is_final;
                    let context = job_context(kind, options.final_window, language, multilingual);
                    if kind == JobKind::FinalWithBacklog && context != Context::Full {
                        s.finals_fitted.fetch_add(1, Ordering::Relaxed);
                    }
                    if detects && detecting.is_none() {
                        detecting = model
                            .context
                            .create_state()
                            .inspect_err(|e| tracing::warn!(error = %e, "no whisper state for language detection"))
                            .ok();
                    }
                    let job_state = match detecting.as_mut() {
                        Some(d) if detects => d,
                        _ => &mut state,
                    };
                    // Interims run on one thread: a second one buys less than it costs (wall
                    // time x threads), and interims are replaced within a second anyway.
                    let n = if kind == JobKind::Interim {
                        1
                    } else {
                        threads.for_next_job()
                    };
                    let result = decode.run(
                        job_state,
                        &request.audio,
                        request.prompt.as_deref(),
                        language,
                        n,
                        context,
                    );
                    threads.job_ended();
                    let wall_ms = started.elapsed().as_millis() as u64;
                    let cpu_ms = wall_ms * n as u64;
                    let audio_ms = request.audio.len() as u64 / 16;
                    s.busy_ms.fetch_add(wall_ms, Ordering::Relaxed);
                    s.cpu_ms.fetch_add(cpu_ms, Ordering::Relaxed);
                    s.audio_ms.fetch_add(audio_ms, Ordering::Relaxed);
                    if context != Context::Full {
                        sp.record(cpu_ms, audio_ms, false);
                    }
                    let result = match result {
                        _ if request.cancelled() => {
                            s.wasted(cpu_ms);
                            Err(RecognizeError::Cancelled)
                        }
                        Ok(h) => Ok(Hypothesis { cpu_ms, ..h }),
                        Err(e) => Err(e),
                    };
                    let counter = if is_final { &s.finals } else { &s.interims };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| RecognizeError::Whisper(e.to_string()))?;
        Ok(Arc::new(Self {
            queue,
            abort,
            thread: Some(thread),
            thread_ended: Mutex::new(thread_ended),
            stats,
            language,
            multilingual,
        }))
    }

    /// Transcribes a finished utterance (16 kHz mono, [-1, 1]). Served before any interim.
    pub fn final_(&self, audio: Vec<f32>) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        self.final_in("", audio, CaptionLanguage::Default)
    }

    /// [`Self::final_`] for `room` in the language a microphone asked for.
    pub fn final_in(
        &self,
        room: &str,
        audio: Vec<f32>,
        language: CaptionLanguage,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        self.final_request(room, Request::new(audio, language))
    }

    /// Queues a final for `room` (whose finals queue it joins: see the module's policy). Never
    /// blocks; a refused final answers [`RecognizeError::Refused`], a cancelled one
    /// [`RecognizeError::Cancelled`]. A request with a `cancel` flag counts as speculative.
    pub fn final_request(
        &self,
        room: &str,
        request: Request,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        let (reply, rx) = oneshot::channel();
        if request.cancel.is_some() {
            self.stats.speculative.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.finals_requested.fetch_add(1, Ordering::Relaxed);
        }
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        let refused = q.finals.push(room, Job { request, reply }).err();
        FINALS_QUEUED.set(q.finals.len() as i64);
        drop(q);
        if let Some(job) = refused {
            self.stats.finals_refused.fetch_add(1, Ordering::Relaxed);
            FINALS_REFUSED.inc();
            let _ = job.reply.send(Err(RecognizeError::Refused));
        }
        cv.notify_one();
        rx
    }

    /// A speculative final became the real one: it counts as a final asked for.
    pub fn speculation_used(&self) {
        self.stats.finals_requested.fetch_add(1, Ordering::Relaxed);
    }

    /// Bounds the finals queue: per room and in all (at least 1 each). Finals already waiting
    /// stay.
    pub fn set_final_limits(&self, per_room: usize, total: usize) {
        let (lock, _) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        q.finals.per_room = per_room.max(1);
        q.finals.total = total.max(1);
    }

    /// Transcribes an utterance in progress for `speaker`, in the language it asked for;
    /// replaces that speaker's pending request.
    pub fn interim(
        &self,
        speaker: u64,
        audio: Vec<f32>,
        language: CaptionLanguage,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        self.interim_request(speaker, Request::new(audio, language))
    }

    /// [`Self::interim`] with a prompt.
    pub fn interim_request(
        &self,
        speaker: u64,
        request: Request,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        let (reply, rx) = oneshot::channel();
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = q.interims.insert(speaker, Job { request, reply }) {
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

    /// Whether finals are waiting for the model now (a speaker holds back its interims then).
    pub fn finals_waiting(&self) -> usize {
        let (lock, _) = &*self.queue;
        lock.lock().unwrap_or_else(|e| e.into_inner()).finals.len()
    }
}

/// How long dropping a recognizer waits for its thread to stop decoding. whisper looks at the
/// abort flag only between encoder passes and decoder steps, and one encoder pass of a large
/// model on a busy machine takes seconds.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Recognizer {
    /// Stops the decode under way and waits (bounded) for the thread to end: a decode left
    /// running into process exit raced whisper's exit-time destructors (a SIGSEGV).
    fn drop(&mut self) {
        self.abort.store(true, Ordering::SeqCst);
        let (lock, cv) = &*self.queue;
        let waiting = {
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            q.closed = true;
            let mut waiting: Vec<Job> = std::iter::from_fn(|| q.finals.pop()).collect();
            waiting.extend(q.interims.drain().map(|(_, job)| job));
            FINALS_QUEUED.set(0);
            waiting
        };
        // Requests still waiting are answered, not left with a closed channel.
        for job in waiting {
            let _ = job.reply.send(Err(RecognizeError::Stopped));
        }
        cv.notify_all();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let ended = self
            .thread_ended
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        match ended.recv_timeout(STOP_WAIT) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("whisper thread still decoding after {STOP_WAIT:?}; left to finish")
            }
            _ => {
                let _ = thread.join();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum JobKind {
    Final,
    /// A final with more finals waiting behind it.
    FinalWithBacklog,
    Interim,
}

fn next_job(queue: &(Mutex<Queue>, Condvar), stats: &RecognizerStats) -> Option<(Job, JobKind)> {
    let (lock, cv) = queue;
    let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        // Nobody is left to read what a closed recognizer would transcribe.
        if q.closed {
            return None;
        }
        if let Some(job) = q.finals.pop() {
            FINALS_QUEUED.set(q.finals.len() as i64);
            if job.request.cancelled() {
                stats.speculative_cancelled.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(RecognizeError::Cancelled));
                continue;
            }
            let kind = if q.finals.len() == 0 {
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
        q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// The encoder window of a job: interims fitted narrowly; finals with others waiting fitted
/// widely; a lone final as configured. The fitted window was measured for English (tiny.en):
/// the base model lost German words with it ("heute"), so finals in other languages, and those
/// that detect their language, get the full one.
fn job_context(
    kind: JobKind,
    window: FinalWindow,
    language: Option<&str>,
    multilingual: bool,
) -> Context {
    let english = !multilingual || language == Some("en");
    match kind {
        JobKind::Interim => INTERIM_CONTEXT,
        _ if language.is_none() => Context::Full,
        JobKind::Final if !english || window == FinalWindow::Full => Context::Full,
        JobKind::Final => FINAL_CONTEXT,
        JobKind::FinalWithBacklog => BACKLOG_FINAL_CONTEXT,
    }
}

/// What every decode of this recognizer shares.
struct Decode<'a> {
    translate: bool,
    /// Token ids from here up are whisper's special tokens.
    eot: whisper_rs::WhisperTokenId,
    abort: &'a AtomicBool,
}

impl Decode<'_> {
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        state: &mut whisper_rs::WhisperState,
        audio: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
        threads: usize,
        context: Context,
    ) -> Result<Hypothesis, RecognizeError> {
        // A final whose greedy decode fails whisper's checks is decoded again at a higher
        // temperature: by sampling, so one candidate was a lottery (the base model heard German
        // "Heute besprechen wir" as "Ich wollte mich nicht mehr" in one CI run in several);
        // five and the likeliest taken, as whisper does. Nothing extra unless it falls back;
        // interims never do.
        let best_of = if context == INTERIM_CONTEXT {
            1
        } else {
            FALLBACK_CANDIDATES
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of });
        // SAFETY: the callback only reads the flag, which outlives `full` (it is borrowed for
        // this whole function). A cancelled request's decode is not stopped: whisper logs a
        // stopped encoder as an error, and the decode under way ends within a fraction of a
        // second anyway.
        unsafe {
            params.set_abort_callback(Some(aborted));
            params.set_abort_callback_user_data(
                self.abort as *const AtomicBool as *mut std::ffi::c_void,
            );
        }
        params.set_n_threads(threads as i32);
        params.set_language(language);
        params.set_detect_language(false);
        params.set_translate(self.translate);
        params.set_no_context(true);
        params.set_no_timestamps(true);
        params.set_single_segment(false);
        params.set_suppress_blank(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        if let Some(prompt) = prompt.map(|p| tail_chars(p, MAX_PROMPT_CHARS))
            && !prompt.is_empty()
        {
            params.set_initial_prompt(prompt);
        }
        // People say about three words (four tokens) a second: a budget far above that stops
        // whisper's repetition loops ("Thank you all Thank you all ...") from costing seconds.
        params.set_max_tokens(16 + (audio.len() / 16_000) as i32 * 8);
        if context == INTERIM_CONTEXT {
            // No temperature fallback for interims: each retry decodes again, and an interim is
            // replaced within a second anyway.
            params.set_temperature_inc(0.0);
        }
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
        // Words as whisper's tokens build them: a token starting with a space starts a word.
        let mut words: Vec<(Vec<u8>, f32)> = Vec::new();
        // The last token's probability when it is a stop (None when it is anything else).
        let mut end_probability = None;
        for segment in state.as_iter() {
            text.push_str(
                &segment
                    .to_str_lossy()
                    .map_err(|e| RecognizeError::Whisper(e.to_string()))?,
            );
            no_speech = no_speech.max(segment.no_speech_probability());
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                if token.token_id() >= self.eot {
                    continue;
                }
                let Ok(bytes) = token.to_bytes() else {
                    continue;
                };
                let p = token.token_probability();
                end_probability = matches!(bytes.trim_ascii(), b"." | b"?" | b"!").then_some(p);
                match words.last_mut() {
                    Some((word, low)) if !bytes.starts_with(b" ") => {
                        word.extend_from_slice(bytes);
                        *low = low.min(p);
                    }
                    _ => words.push((bytes.to_vec(), p)),
                }
            }
        }
        let language = whisper_rs::get_lang_str(state.full_lang_id_from_state())
            .unwrap_or("en")
            .to_string();
        let mut text = text.trim().to_string();
        let mut word_confidence = line_up(&text, &words);
        if let Some(echo) = prompt.map(|p| prompt_echo(p, &text)).filter(|&n| n > 0) {
            // whisper sometimes says its prompt's last sentence again before the new words.
            text = text
                .split_whitespace()
                .skip(echo)
                .collect::<Vec<_>>()
                .join(" ");
            word_confidence = word_confidence
                .get(echo..)
                .map(<[f32]>::to_vec)
                .unwrap_or_default();
        }
        Ok(Hypothesis {
            text,
            no_speech_probability: no_speech,
            language,
            word_confidence,
            cpu_ms: 0,
            end_probability,
        })
    }
}

/// The confidences of `words` (token-built) per whitespace-separated word of `text`, or none
/// when the two do not line up.
fn line_up(text: &str, words: &[(Vec<u8>, f32)]) -> Vec<f32> {
    let mut out = Vec::with_capacity(words.len());
    let mut built = words.iter().filter_map(|(w, p)| {
        let w = String::from_utf8_lossy(w);
        let w = w.trim();
        (!w.is_empty()).then(|| (w.to_string(), *p))
    });
    for word in text.split_whitespace() {
        match built.next() {
            Some((w, p)) if w == word => out.push(p),
            _ => return Vec::new(),
        }
    }
    if built.next().is_some() {
        return Vec::new();
    }
    out
}

/// How many leading words of `text` repeat the last sentence of `prompt` (0: none).
fn prompt_echo(prompt: &str, text: &str) -> usize {
    let key = |w: &str| {
        w.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let prompt = prompt.trim().trim_end_matches(['.', '?', '!']);
    let last = prompt
        .rfind(['.', '?', '!'])
        .map_or(prompt, |i| &prompt[i + 1..]);
    let sentence: Vec<String> = last.split_whitespace().map(key).collect();
    let words: Vec<String> = text.split_whitespace().map(key).collect();
    if sentence.is_empty()
        || words.len() <= sentence.len()
        || words[..sentence.len()] != sentence[..]
    {
        return 0;
    }
    sentence.len()
}

/// The last `max` characters of `text`, starting at a word.
pub(super) fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text.trim();
    }
    let start = text
        .char_indices()
        .nth(count - max)
        .map_or(text.len(), |(i, _)| i);
    let tail = &text[start..];
    match tail.find(char::is_whitespace) {
        Some(space) => tail[space..].trim(),
        None => tail.trim(),
    }
}

/// whisper's abort callback: `user_data` is the recognizer's abort flag.
unsafe extern "C" fn aborted(user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `Decode::run` passes a pointer to an `AtomicBool` that outlives the decode.
    unsafe { &*(user_data as *const AtomicBool) }.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_words_line_up_with_the_text() {
        let words = vec![
            (b" And".to_vec(), 0.9),
            (b" so,".to_vec(), 0.8),
            (b" my".to_vec(), 0.99),
        ];
        assert_eq!(line_up("And so, my", &words), vec![0.9, 0.8, 0.99]);
        assert!(line_up("And so my", &words).is_empty());
        assert!(line_up("And so,", &words).is_empty());
    }

    #[test]
    fn an_echo_of_the_prompt_is_found() {
        let prompt = "He might even have been made amiable himself. And so am I fellow American.";
        assert_eq!(
            prompt_echo(prompt, "And so am I fellow American. Ask not what"),
            6
        );
        assert_eq!(prompt_echo(prompt, "Ask not what your country"), 0);
        // The whole text being the echo is left alone: it may be a real repetition.
        assert_eq!(prompt_echo(prompt, "And so am I fellow American."), 0);
        assert_eq!(prompt_echo("", "anything"), 0);
    }

    #[test]
    fn the_prompt_is_the_tail_from_a_word() {
        assert_eq!(tail_chars(" ask not ", 20), "ask not");
        assert_eq!(tail_chars("what your country can do", 12), "can do");
        assert!(tail_chars(&"word ".repeat(200), MAX_PROMPT_CHARS).len() <= MAX_PROMPT_CHARS);
    }

    #[test]
    fn the_window_follows_the_job_and_the_language() {
        let fitted = FinalWindow::Fitted;
        let en = Some("en");
        assert_eq!(
            job_context(JobKind::Interim, fitted, None, true),
            INTERIM_CONTEXT
        );
        assert_eq!(
            job_context(JobKind::Final, fitted, en, false),
            FINAL_CONTEXT
        );
        assert_eq!(
            job_context(JobKind::Final, FinalWindow::Full, en, false),
            Context::Full
        );
        assert_eq!(
            job_context(JobKind::FinalWithBacklog, FinalWindow::Full, en, false),
            BACKLOG_FINAL_CONTEXT
        );
        // Other languages and detection: the whole window.
        assert_eq!(
            job_context(JobKind::Final, fitted, Some("de"), true),
            Context::Full
        );
        assert_eq!(job_context(JobKind::Final, fitted, en, true), FINAL_CONTEXT);
        assert_eq!(
            job_context(JobKind::FinalWithBacklog, fitted, None, true),
            Context::Full
        );
    }

    #[test]
    fn speed_follows_recent_jobs() {
        let speed = Speed::default();
        speed.record(300, 3000, true);
        assert_eq!(speed.cpu_ms_per_audio_s(), 100.0);
        for _ in 0..40 {
            speed.record(900, 3000, false);
        }
        assert!((speed.cpu_ms_per_audio_s() - 300.0).abs() < 1.0);
        speed.record(5, 0, false);
        assert!((speed.cpu_ms_per_audio_s() - 300.0).abs() < 1.0);
    }

    fn drain(f: &mut Finals<(&'static str, u32)>) -> Vec<(&'static str, u32)> {
        std::iter::from_fn(|| f.pop()).collect()
    }

    #[test]
    fn rooms_take_turns_for_finals() {
        let mut f = Finals::new(16, 128);
        for i in 0..4 {
            f.push("busy", ("busy", i)).unwrap();
        }
        f.push("quiet", ("quiet", 0)).unwrap();
        f.push("other", ("other", 0)).unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(
            drain(&mut f),
            vec![
                ("busy", 0),
                ("quiet", 0),
                ("other", 0),
                ("busy", 1),
                ("busy", 2),
                ("busy", 3)
            ]
        );
        assert_eq!(f.len(), 0);
        assert!(f.rooms.is_empty() && f.turn.is_empty());
    }

    #[test]
    fn a_full_room_refuses_its_new_final() {
        let mut f = Finals::new(3, 128);
        for i in 0..3 {
            f.push("busy", ("busy", i)).unwrap();
        }
        assert_eq!(f.push("busy", ("busy", 3)), Err(("busy", 3)));
        // Other rooms are not affected.
        f.push("quiet", ("quiet", 0)).unwrap();
        assert_eq!(f.len(), 4);
        // Once served, the room gets room again.
        assert_eq!(f.pop(), Some(("busy", 0)));
        f.push("busy", ("busy", 4)).unwrap();
        assert_eq!(
            drain(&mut f),
            vec![("quiet", 0), ("busy", 1), ("busy", 2), ("busy", 4)]
        );
    }

    #[test]
    fn a_full_queue_makes_the_fullest_room_give_way() {
        let mut f = Finals::new(8, 6);
        for i in 0..5 {
            f.push("a", ("a", i)).unwrap();
        }
        f.push("b", ("b", 0)).unwrap();
        assert_eq!(f.len(), 6);
        // A quiet room still gets in: the newest final of the fullest room is refused instead.
        assert_eq!(f.push("c", ("c", 0)), Err(("a", 4)));
        assert_eq!(f.len(), 6);
        // The fullest room itself cannot push more.
        assert_eq!(f.push("a", ("a", 5)), Err(("a", 5)));
        // Rooms holding as many as the fullest after the push are refused: no ping-pong.
        let mut g = Finals::new(8, 4);
        for room in ["a", "b"] {
            for i in 0..2 {
                g.push(room, (room, i)).unwrap();
            }
        }
        assert_eq!(g.push("c", ("c", 0)), Err(("b", 1)));
        assert_eq!(g.push("d", ("d", 0)), Err(("a", 1)));
        assert_eq!(g.push("e", ("e", 0)), Err(("e", 0)));
        assert_eq!(drain(&mut g), vec![("a", 0), ("b", 0), ("c", 0), ("d", 0)]);
        assert_eq!(
            drain(&mut f),
            vec![("a", 0), ("b", 0), ("c", 0), ("a", 1), ("a", 2), ("a", 3)]
        );
    }

    #[test]
    fn the_default_queue_is_bounded() {
        let q = Queue::default();
        assert_eq!(
            (q.finals.per_room, q.finals.total),
            (MAX_QUEUED_FINALS_PER_ROOM, MAX_QUEUED_FINALS)
        );
        let mut f = Finals::new(MAX_QUEUED_FINALS_PER_ROOM, MAX_QUEUED_FINALS);
        let mut refused = 0;
        for i in 0..10_000u32 {
            if f.push("flood", ("flood", i)).is_err() {
                refused += 1;
            }
        }
        assert_eq!(f.len(), MAX_QUEUED_FINALS_PER_ROOM);
        assert_eq!(refused, 10_000 - MAX_QUEUED_FINALS_PER_ROOM);
    }
}
