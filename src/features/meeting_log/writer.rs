//! Writes a meeting into the messaging store while it runs: the thread's root message when it
//! starts, each final caption as a segment at once and in transcript messages every few
//! seconds, and the summary when it ends. While the database is away, writes wait in memory and
//! are retried with growing backoff (the journal on disk keeps every final regardless); a retry
//! never duplicates anything, because every id is derived from what it names.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::captions::journal::unix_ms;
use crate::store::{
    MAX_MESSAGE_CHARS, Meeting, Message, Segment, Store, StoreError, split_message,
};
use crate::summary::{self, Presence, clock, utc_time};

/// Transcript messages collect this long before they are posted.
const BATCH_EVERY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum LogEvent {
    Presence(Presence),
    Final(Segment),
    /// An attendee's address, from a trusted attribute (for the follow-up e-mail).
    Address(String, String),
    /// A section a feature adds to the end of the summary (call quality).
    Section(String),
}

/// The meeting's handle for pipelines: cheap to clone, never blocks.
#[derive(Clone)]
pub struct MeetingLog {
    tx: mpsc::UnboundedSender<LogEvent>,
    started: Instant,
}

#[derive(Debug, Clone)]
pub struct MeetingLogOptions {
    /// The messaging store's user the agent posts as.
    pub bot_user: String,
    /// How long to keep retrying after the meeting ended before giving up (the journal remains).
    pub flush_timeout: Duration,
    /// The model that writes key points; `None`: extractive.
    pub llm: Option<crate::summary::llm::LlmConfig>,
    /// `transcript.ready` and `summary.ready` for webhooks.
    pub events: Option<crate::integrations::Events>,
    /// The follow-up e-mail (`[email]`).
    pub email: crate::config::EmailConfig,
}

impl MeetingLogOptions {
    /// The `[store]` and `[summary]` settings.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            bot_user: config.store.bot_user.clone(),
            flush_timeout: Duration::from_secs(config.store.flush_timeout_secs),
            llm: crate::summary::llm::LlmConfig::from_config(&config.summary),
            events: None,
            email: config.email.clone(),
        }
    }
}

impl MeetingLog {
    /// Starts writing `meeting`; the returned task ends once the last handle is dropped and
    /// everything is written (or `flush_timeout` passed).
    pub fn start(
        store: Store,
        meeting: Meeting,
        options: MeetingLogOptions,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Writer::new(store, meeting, options).run(rx));
        (
            Self {
                tx,
                started: Instant::now(),
            },
            task,
        )
    }

    /// Milliseconds since the meeting started.
    pub fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    pub fn presence(&self, identity: &str, joined: bool) {
        self.presence_at(identity, joined, self.now_ms());
    }

    /// Someone joining or leaving at `at_ms` into the meeting (offline processing knows it).
    pub fn presence_at(&self, identity: &str, joined: bool, at_ms: i64) {
        let _ = self.tx.send(LogEvent::Presence(Presence {
            identity: identity.to_string(),
            at_ms,
            joined,
        }));
    }

    /// `identity`'s address for the follow-up, from a trusted attribute.
    pub fn attendee_address(&self, identity: &str, address: &str) {
        let _ = self
            .tx
            .send(LogEvent::Address(identity.to_string(), address.to_string()));
    }

    pub fn final_caption(&self, segment: Segment) {
        let _ = self.tx.send(LogEvent::Final(segment));
    }

    /// Adds `text` (a titled section) to the end of the meeting's summary; sent before the
    /// meeting ends (features finish before the log does).
    pub fn summary_section(&self, text: String) {
        let _ = self.tx.send(LogEvent::Section(text));
    }

    /// This log as the place captions send their finals to.
    pub fn finals_sink(&self) -> crate::captions::speaker::FinalsSink {
        let log = self.clone();
        std::sync::Arc::new(move |segment| log.final_caption(segment))
    }
}

struct Writer {
    store: Store,
    meeting: Meeting,
    options: MeetingLogOptions,
    root_posted: bool,
    /// Segments not yet stored.
    pending: Vec<Segment>,
    /// Segments stored but not yet in a transcript message.
    unbatched: Vec<Segment>,
    /// Formed messages not yet posted (their ids are fixed once formed).
    outbox: Vec<Message>,
    batches: usize,
    all: Vec<Segment>,
    presence: Vec<Presence>,
    /// Attendees' addresses from attributes (at most `email.max_recipients`).
    addresses: std::collections::BTreeMap<String, String>,
    /// Sections other features add to the summary, in the order they came.
    sections: Vec<String>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// The newest message's time: each message gets a later one, so the thread's order is the
    /// order they were written in, even within one millisecond.
    last_created_ms: i64,
}

impl Writer {
    fn new(store: Store, meeting: Meeting, options: MeetingLogOptions) -> Self {
        Self {
            store,
            meeting,
            options,
            root_posted: false,
            pending: Vec::new(),
            unbatched: Vec::new(),
            outbox: Vec::new(),
            batches: 0,
            all: Vec::new(),
            presence: Vec::new(),
            addresses: Default::default(),
            sections: Vec::new(),
            backoff: Duration::from_millis(500),
            retry_at: None,
            last_created_ms: 0,
        }
    }

    fn message(&mut self, id: String, kind: &str, text: String) -> Message {
        self.last_created_ms = (unix_ms() as i64).max(self.last_created_ms + 1);
        Message {
            id,
            conversation_id: self.meeting.id.clone(),
            sender_id: self.options.bot_user.clone(),
            recipient_id: None,
            reply_to: (kind != "meeting").then(|| self.meeting.thread_id.clone()),
            kind: kind.to_string(),
            text,
            created_at_ms: self.last_created_ms,
        }
    }

    /// Moves what was said since the last batch into transcript messages (split when long).
    fn form_batch(&mut self) {
        if self.unbatched.is_empty() {
            return;
        }
        let text: String = self
            .unbatched
            .drain(..)
            .map(|s| format!("[{}] {}: {}\n", clock(s.start_ms), s.speaker, s.text))
            .collect();
        let parts = split_message(text.trim_end(), MAX_MESSAGE_CHARS);
        let many = parts.len() > 1;
        for (i, part) in parts.into_iter().enumerate() {
            let id = if many {
                format!("{}/transcript/{}/{}", self.meeting.id, self.batches, i)
            } else {
                format!("{}/transcript/{}", self.meeting.id, self.batches)
            };
            let message = self.message(id, "transcript", part);
            self.outbox.push(message);
        }
        self.batches += 1;
    }

    /// One attempt to write everything waiting.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if !self.root_posted {
            let present: Vec<&str> = self
                .presence
                .iter()
                .filter(|p| p.joined)
                .map(|p| p.identity.as_str())
                .collect();
            let root = self.message(
                self.meeting.thread_id.clone(),
                "meeting",
                format!(
                    "Meeting in {} started at {} UTC (transcript below). Participants: {}",
                    self.meeting.room,
                    utc_time(self.meeting.started_at_ms),
                    if present.is_empty() {
                        "none yet".to_string()
                    } else {
                        present.join(", ")
                    }
                ),
            );
            self.store.open_meeting(&self.meeting, &root).await?;
            self.resume().await?;
            self.root_posted = true;
        }
        if !self.pending.is_empty() {
            self.store
                .add_segments(&self.meeting, &self.pending)
                .await?;
            self.unbatched.append(&mut self.pending);
        }
        self.form_batch();
        if !self.outbox.is_empty() {
            self.store.post(&self.outbox).await?;
            self.outbox.clear();
        }
        Ok(())
    }

    /// A meeting another agent served until it died goes on where it left off: the summary
    /// covers what was said before, and transcript batches are numbered after the earlier ones.
    async fn resume(&mut self) -> Result<(), StoreError> {
        let earlier = self.store.segments(&self.meeting.id).await?;
        if earlier.is_empty() {
            return Ok(());
        }
        let prefix = format!("{}/transcript/", self.meeting.id);
        let next_batch = self
            .store
            .thread(&self.meeting.id)
            .await?
            .iter()
            .filter_map(|m| m.id.strip_prefix(&prefix)?.split('/').next()?.parse().ok())
            .map(|n: usize| n + 1)
            .max()
            .unwrap_or(0);
        self.batches = self.batches.max(next_batch);
        let known: std::collections::HashSet<String> =
            self.all.iter().map(|s| s.key.clone()).collect();
        let mut all: Vec<Segment> = earlier
            .into_iter()
            .filter(|s| !known.contains(&s.key))
            .collect();
        tracing::info!(meeting = %self.meeting.id, earlier_segments = all.len(), next_batch, "continuing a meeting another agent served");
        all.append(&mut self.all);
        self.all = all;
        Ok(())
    }

    async fn try_flush(&mut self) {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.flush().await {
            Ok(()) => {
                if self.retry_at.take().is_some() {
                    tracing::info!(meeting = %self.meeting.id, "messaging store reachable again; caught up");
                }
                self.backoff = Duration::from_millis(500);
            }
            Err(e) => {
                tracing::warn!(meeting = %self.meeting.id, error = %e, waiting = self.pending.len() + self.outbox.len(), retry_in_ms = self.backoff.as_millis() as u64, "messaging store write failed; keeping it to retry");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LogEvent>) {
        let mut tick = tokio::time::interval(BATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(LogEvent::Final(segment)) => {
                        self.all.push(segment.clone());
                        self.pending.push(segment);
                    }
                    Some(LogEvent::Presence(p)) => self.presence.push(p),
                    Some(LogEvent::Address(identity, address)) => {
                        if self.addresses.len() < self.options.email.max_recipients
                            || self.addresses.contains_key(&identity)
                        {
                            self.addresses.insert(identity, address);
                        }
                    }
                    Some(LogEvent::Section(text)) => self.sections.push(text),
                    None => break,
                },
                _ = tick.tick() => self.try_flush().await,
            }
        }
        self.finish().await;
    }

    /// After the meeting: everything still waiting, then the summary and the end time.
    async fn finish(mut self) {
        let ended_ms = unix_ms() as i64;
        let duration_ms = ended_ms - self.meeting.started_at_ms;
        let summary = summary::llm::summarise(
            self.options.llm.as_ref(),
            &self.all,
            summary::analytics(&self.all, &self.presence, duration_ms),
        )
        .await;
        let mut text = summary.to_message_text(&self.meeting.room);
        text.push_str(&breakout_section(&self.store, &self.meeting).await);
        for section in &self.sections {
            text.push_str(section);
        }
        // Formed once the transcript is in, so it follows the last transcript message.
        let mut summary_messages: Option<Vec<Message>> = None;
        let deadline = Instant::now() + self.options.flush_timeout;
        loop {
            let result = async {
                self.flush().await?;
                let messages = summary_messages.get_or_insert_with(|| {
                    let parts = split_message(&text, MAX_MESSAGE_CHARS);
                    let many = parts.len() > 1;
                    parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, part)| {
                            let id = if many {
                                format!("{}/summary/{i}", self.meeting.id)
                            } else {
                                format!("{}/summary", self.meeting.id)
                            };
                            self.message(id, "summary", part)
                        })
                        .collect()
                });
                self.store.post(messages).await?;
                self.store.end_meeting(&self.meeting.id, ended_ms).await
            }
            .await;
            match result {
                Ok(()) => {
                    tracing::info!(meeting = %self.meeting.id, segments = self.all.len(), "meeting thread and summary written");
                    self.announce(ended_ms, &summary).await;
                    return;
                }
                Err(e) if Instant::now() + self.backoff < deadline => {
                    tracing::warn!(meeting = %self.meeting.id, error = %e, "messaging store unavailable at the end of the meeting; retrying");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    return tracing::error!(meeting = %self.meeting.id, error = %e, unwritten = self.pending.len() + self.outbox.len(), "giving up on the messaging store; the transcript journal keeps every final caption");
                }
            }
        }
    }
}

impl Writer {
    /// Once everything is written: `transcript.ready` and `summary.ready` for webhooks, and
    /// the follow-up e-mails (their rows in the outbox).
    async fn announce(&self, ended_ms: i64, summary: &summary::Summary) {
        let (meeting, room) = (&self.meeting, Some(self.meeting.room.as_str()));
        if let Some(events) = &self.options.events {
            let common = serde_json::json!({
                "meeting_id": meeting.id,
                "room": meeting.room,
                "thread_id": meeting.thread_id,
                "started_at_ms": meeting.started_at_ms,
                "ended_at_ms": ended_ms,
            });
            let mut transcript = common.clone();
            transcript["segments"] = self.all.len().into();
            transcript["export"] = format!("/v1/meetings/{}/transcript", meeting.id).into();
            let mut summarised = common;
            summarised["key_points"] = serde_json::json!(summary.key_points);
            summarised["decisions"] = serde_json::json!(summary.decisions);
            summarised["action_items"] = serde_json::json!(summary.action_items);
            summarised["attendance"] = serde_json::json!(summary.attendance);
            summarised["duration_ms"] = summary.duration_ms.into();
            for (event_type, data) in [
                ("transcript.ready", transcript),
                ("summary.ready", summarised),
            ] {
                let event =
                    crate::integrations::Event::new(event_type, room, &meeting.id, ended_ms, data);
                if let Err(e) = events.emit(&event, ended_ms).await {
                    tracing::warn!(error = %e, event = event_type, "webhook event not written");
                }
            }
        }
        if !self.options.email.enabled {
            return;
        }
        // Each attendee's address: a trusted attribute's, else the platform's (`user_emails`).
        let mut addresses = Vec::new();
        for attendee in &summary.attendance {
            let address = match self.addresses.get(&attendee.identity) {
                Some(a) => Some(a.clone()),
                None => self
                    .store
                    .user_email(&attendee.identity)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "an attendee's address could not be read");
                        None
                    }),
            };
            if let Some(address) = address {
                addresses.push((attendee.identity.clone(), address));
            }
        }
        match crate::integrations::email::enqueue_follow_ups(
            &self.store,
            &self.options.email,
            meeting,
            ended_ms,
            summary,
            &addresses,
        )
        .await
        {
            Ok(n) => {
                tracing::info!(meeting = %meeting.id, recipients = n, "follow-up e-mails queued")
            }
            Err(e) => {
                tracing::error!(error = %e, meeting = %meeting.id, "follow-up e-mails not queued")
            }
        }
    }
}

/// Longest part of a breakout's summary quoted in the main meeting's summary, in characters.
const BREAKOUT_SUMMARY_CHARS: usize = 1500;

/// Posts into the main room's meeting thread (its newest meeting still open) where a breakout's
/// transcript is: a message of kind `breakout` naming the breakout's thread. The store may be
/// busy (SQLite locks for a moment) or away: retried with a backoff, like the thread itself.
pub async fn link_breakout(store: Store, bot_user: String, main: String, breakout: Meeting) {
    if let Err(e) = retried(|| try_link_breakout(&store, &bot_user, &main, &breakout)).await {
        tracing::warn!(error = %e, "cannot link a breakout's thread");
    }
}

/// `call` again while the store fails, with a growing pause, [`LINK_ATTEMPTS`] times at most.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(250);
    for attempt in 1..LINK_ATTEMPTS {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                tracing::debug!(error = %e, attempt, "messaging store busy; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    call().await
}

/// Attempts at a store call about breakouts before giving up (about 30 s with the backoff).
const LINK_ATTEMPTS: u32 = 8;

/// Links a breakout's thread from the main room's open meeting, once.
async fn try_link_breakout(
    store: &Store,
    bot_user: &str,
    main: &str,
    breakout: &Meeting,
) -> Result<(), StoreError> {
    let open = store
        .meetings(Some(main))
        .await?
        .into_iter()
        .find(|m| m.ended_at_ms.is_none());
    let Some(parent) = open else {
        tracing::info!(
            main,
            "no open meeting in the main room to link the breakout from"
        );
        return Ok(());
    };
    let message = Message {
        id: format!("{}/breakout/{}", parent.id, breakout.id),
        conversation_id: parent.id.clone(),
        sender_id: bot_user.to_string(),
        recipient_id: None,
        reply_to: Some(parent.thread_id.clone()),
        kind: "breakout".into(),
        text: format!(
            "Breakout room {}: its transcript and summary are in thread {}",
            breakout.room, breakout.thread_id
        ),
        created_at_ms: unix_ms() as i64,
    };
    store.post(&[message]).await
}

/// The main meeting's summary section on its breakout rooms: each one's summary (or that it is
/// still going) and its thread. Empty when the meeting had none.
async fn breakout_section(store: &Store, main: &Meeting) -> String {
    let mut lines = Vec::new();
    for index in 0..crate::meeting::breakouts::MAX_BREAKOUTS {
        let room = crate::meeting::breakouts::Breakouts::room_name(&main.room, index);
        let Ok(meetings) = retried(|| store.meetings(Some(&room))).await else {
            continue;
        };
        for meeting in meetings
            .into_iter()
            .filter(|m| m.started_at_ms >= main.started_at_ms)
        {
            let summary: String = match retried(|| store.thread(&meeting.id)).await {
                Ok(thread) => thread
                    .into_iter()
                    .filter(|m| m.kind == "summary")
                    .map(|m| m.text)
                    .collect::<Vec<_>>()
                    .join(""),
                Err(_) => String::new(),
            };
            let said = if summary.is_empty() {
                "no summary yet".to_string()
            } else {
                // The breakout's own summary without its first line (the title), on one line.
                let body: String = summary
                    .lines()
                    .skip(1)
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                body.chars().take(BREAKOUT_SUMMARY_CHARS).collect()
            };
            lines.push(format!("- {room} (thread {}): {said}\n", meeting.thread_id));
        }
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nBreakout rooms\n{}", lines.concat())
    }
}
