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
    /// The finals queue was full (see the module's policy): not transcribed.
    #[error("final refused: the recognizer's queue is full")]
    Refused,
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
    /// Finals refused because the queue was full (never transcribed).
    pub finals_refused: AtomicU64,
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
                let _model = model; // the context outlives the state
                let mut threads = super::threads::ThreadBudget::new(options.threads);
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
                        threads.for_next_job(),
                        context,
                        &stop,
                    );
                    threads.job_ended();
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

    /// [`Self::final_`] for `room` (whose finals queue it joins: see the module's policy), in
    /// the language a microphone asked for. Never blocks; a refused final answers
    /// [`RecognizeError::Refused`].
    pub fn final_in(
        &self,
        room: &str,
        audio: Vec<f32>,
        language: CaptionLanguage,
    ) -> oneshot::Receiver<Result<Hypothesis, RecognizeError>> {
        let (reply, rx) = oneshot::channel();
        self.stats.finals_requested.fetch_add(1, Ordering::Relaxed);
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job {
            audio,
            language,
            reply,
        };
        let refused = q.finals.push(room, job).err();
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
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
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

fn next_job(queue: &(Mutex<Queue>, Condvar)) -> Option<(Job, JobKind)> {
    let (lock, cv) = queue;
    let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        // Nobody is left to read what a closed recognizer would transcribe.
        if q.closed {
            return None;
        }
        if let Some(job) = q.finals.pop() {
            FINALS_QUEUED.set(q.finals.len() as i64);
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

fn transcribe(
    state: &mut whisper_rs::WhisperState,
    audio: &[f32],
    language: Option<&str>,
    translate: bool,
    threads: usize,
    context: Context,
    abort: &Arc<AtomicBool>,
) -> Result<Hypothesis, RecognizeError> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    // SAFETY: the callback only reads the flag, which `abort` keeps alive past `full`.
    unsafe {
        params.set_abort_callback(Some(aborted));
        params.set_abort_callback_user_data(Arc::as_ptr(abort) as *mut std::ffi::c_void);
    }
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

/// whisper's abort callback: `user_data` is the recognizer's abort flag.
unsafe extern "C" fn aborted(user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `transcribe` passes a pointer to an `AtomicBool` that outlives the decode.
    unsafe { &*(user_data as *const AtomicBool) }.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
