//! Call quality and engagement: every `interval_secs` the agent reads WebRTC's statistics of
//! each track it receives (bytes, packets lost, jitter, frames, size, freezes) and stores the
//! interval's figures with the participant's LiveKit connection quality; it follows each
//! participant's speaking, camera and screen-share time and joins and leaves. At the end the
//! worst moments go into the meeting's summary when notable (`moments`). Bounded: samples per
//! track and participants per room (`[call_quality]`), rows waiting for the store.

pub mod moments;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::captions::journal::unix_ms;
use crate::config::CallQualityConfig;
use crate::features::meeting_log::MeetingLog;
use crate::features::talk_time::SpeechCounter;
use crate::livekit::room::{ConnectionQuality, InboundTotals};
use crate::livekit::{Room, RoomEvent, TrackKind, TrackSource};
use crate::session::feature::FinishFuture;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature, TrackContext};
use crate::store::{Engagement, Meeting, QualitySample, Store};

/// Rows kept for the store while it is away; older ones are dropped (and counted).
const MAX_PENDING_ROWS: usize = 20_000;
/// Engagement is written every this many samples (and at the end).
const ENGAGEMENT_EVERY: u64 = 6;

static BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_received_bytes_total",
        "Bytes the agent received of the tracks it subscribes to.",
    )
});
static PACKETS_LOST: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_received_packets_lost_total",
        "Packets of subscribed tracks lost on their way to the agent.",
    )
});
static FREEZES: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_received_video_freezes_total",
        "Freezes of the video tracks the agent receives.",
    )
});
static LOSS: LazyLock<Histogram> = LazyLock::new(|| {
    crate::metrics::histogram(
        "meeting_agent_received_packet_loss_percent",
        "Packet loss of one track over one sampling interval, per cent.",
        &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0],
    )
});
static JITTER: LazyLock<Histogram> = LazyLock::new(|| {
    crate::metrics::histogram(
        "meeting_agent_received_jitter_ms",
        "Interarrival jitter of a received track at each sample, milliseconds.",
        &[5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0],
    )
});
static BITRATE: LazyLock<Histogram> = LazyLock::new(|| {
    crate::metrics::histogram(
        "meeting_agent_received_bitrate_kbps",
        "Bitrate of one received track over one sampling interval, kbit/s.",
        &[
            16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
        ],
    )
});
static POOR: LazyLock<IntGauge> = LazyLock::new(|| {
    crate::metrics::gauge(
        "meeting_agent_poor_connections",
        "Participants whose LiveKit connection quality is poor or lost now, over rooms.",
    )
});
static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    crate::metrics::counter(
        "meeting_agent_quality_samples_dropped_total",
        "Call quality samples not stored: past a cap, or while the store was away too long.",
    )
});

pub fn register_metrics() {
    for m in [&*BYTES, &*PACKETS_LOST, &*FREEZES, &*DROPPED] {
        m.get();
    }
    for h in [&*LOSS, &*JITTER, &*BITRATE] {
        h.get_sample_count();
    }
    POOR.get();
}

pub struct CallQuality {
    pub store: Store,
    pub config: CallQualityConfig,
}

impl Feature for CallQuality {
    fn name(&self) -> &'static str {
        "call-quality"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        if !self.config.enabled {
            return None;
        }
        let meeting = Meeting::new(&room.name, room.started_unix_ms as i64);
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = watch::channel(false);
        let sampler = Sampler {
            room: room.room.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
            meeting_id: meeting.id.clone(),
            room_name: room.name.clone(),
            state: state.clone(),
            pending: Vec::new(),
            ticks: 0,
        };
        Some(Box::new(RoomQuality {
            state,
            config: self.config.clone(),
            store: self.store.clone(),
            meeting_id: meeting.id,
            log: room.shared.get::<MeetingLog>().cloned(),
            stop,
            task: tokio::spawn(sampler.run(stopped)),
        }))
    }
}

/// One followed participant.
struct Person {
    engagement: Engagement,
    present: bool,
    quality: ConnectionQuality,
    /// Speech frames (10 ms) of their microphones.
    speech: Arc<AtomicU64>,
    /// Samples stored of their tracks (at most 4 tracks' worth).
    samples: u64,
}

/// One subscribed track.
struct Tracked {
    participant: String,
    kind: TrackKind,
    source: TrackSource,
    /// Since when it has shown (unmuted), Unix ms.
    on_since: Option<i64>,
    last: Option<InboundTotals>,
    last_at_ms: i64,
    seq: i64,
}

#[derive(Default)]
struct State {
    people: HashMap<String, Person>,
    tracks: HashMap<String, Tracked>,
}

fn quality_name(q: ConnectionQuality) -> &'static str {
    match q {
        ConnectionQuality::QualityExcellent => "excellent",
        ConnectionQuality::QualityGood => "good",
        ConnectionQuality::QualityPoor => "poor",
        ConnectionQuality::QualityLost => "lost",
    }
}

fn is_poor(q: ConnectionQuality) -> bool {
    matches!(
        q,
        ConnectionQuality::QualityPoor | ConnectionQuality::QualityLost
    )
}

impl State {
    /// `identity`'s entry, made if there is room for one more.
    fn person(&mut self, identity: &str, max: usize) -> Option<&mut Person> {
        if !self.people.contains_key(identity) {
            if self.people.len() >= max {
                return None;
            }
            let now = unix_ms() as i64;
            self.people.insert(
                identity.to_string(),
                Person {
                    engagement: Engagement {
                        participant: identity.to_string(),
                        first_seen_ms: now,
                        last_seen_ms: now,
                        ..Default::default()
                    },
                    present: false,
                    quality: ConnectionQuality::QualityExcellent,
                    speech: Arc::default(),
                    samples: 0,
                },
            );
        }
        self.people.get_mut(identity)
    }

    /// A track stops showing (muted, ended): its time goes to its owner's camera or screen.
    fn track_off(&mut self, sid: &str, now: i64) {
        let Some(t) = self.tracks.get_mut(sid) else {
            return;
        };
        let Some(since) = t.on_since.take() else {
            return;
        };
        let (participant, source) = (t.participant.clone(), t.source);
        if let Some(p) = self.people.get_mut(&participant) {
            match source {
                TrackSource::SourceCamera => p.engagement.camera_ms += now - since,
                TrackSource::SourceScreenshare => p.engagement.screen_ms += now - since,
                _ => {}
            }
        }
    }

    /// Everyone's engagement as of `now` (tracks still showing counted up to now).
    fn engagement(&self, now: i64) -> Vec<Engagement> {
        let mut rows: HashMap<&str, Engagement> = self
            .people
            .iter()
            .map(|(id, p)| {
                let mut e = p.engagement.clone();
                e.speaking_ms = p.speech.load(Ordering::Relaxed) as i64 * 10;
                if p.present {
                    e.last_seen_ms = now;
                }
                (id.as_str(), e)
            })
            .collect();
        for t in self.tracks.values() {
            if let (Some(since), Some(e)) = (t.on_since, rows.get_mut(t.participant.as_str())) {
                match t.source {
                    TrackSource::SourceCamera => e.camera_ms += now - since,
                    TrackSource::SourceScreenshare => e.screen_ms += now - since,
                    _ => {}
                }
            }
        }
        rows.into_values().collect()
    }
}

struct RoomQuality {
    state: Arc<Mutex<State>>,
    config: CallQualityConfig,
    store: Store,
    meeting_id: String,
    log: Option<MeetingLog>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RoomQuality {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoomFeature for RoomQuality {
    fn on_participant(&mut self, room: &RoomContext, change: &ParticipantChange) {
        let max = self.config.max_participants;
        let now = unix_ms() as i64;
        let mut state = self.state();
        match change {
            ParticipantChange::Joined { identity } => {
                let Some(p) = state.person(identity, max) else {
                    return tracing::debug!(room = %room.name, %identity, max, "call quality: participant not followed (room's cap)");
                };
                p.present = true;
                p.engagement.joins += 1;
                p.engagement.last_seen_ms = now;
            }
            ParticipantChange::Left { identity } => {
                if let Some(p) = state.people.get_mut(identity) {
                    p.present = false;
                    p.engagement.leaves += 1;
                    p.engagement.last_seen_ms = now;
                    if is_poor(p.quality) {
                        POOR.dec();
                    }
                    p.quality = ConnectionQuality::QualityExcellent;
                }
            }
        }
    }

    fn on_track(&mut self, room: &RoomContext, track: &mut TrackContext) {
        let max = self.config.max_participants;
        let mut state = self.state();
        let Some(person) = state.person(&track.participant, max) else {
            return;
        };
        // A screen share's sound is not its presenter speaking.
        if track.kind == TrackKind::KindAudio && track.source != TrackSource::SourceScreenshareAudio
        {
            track.add_audio_sink(Box::new(SpeechCounter(person.speech.clone())));
        }
        let muted = room
            .room
            .subscribed_tracks()
            .iter()
            .any(|t| t.sid == track.sid && t.muted);
        let now = unix_ms() as i64;
        state.tracks.insert(
            track.sid.clone(),
            Tracked {
                participant: track.participant.clone(),
                kind: track.kind,
                source: track.source,
                on_since: (!muted).then_some(now),
                last: None,
                last_at_ms: now,
                seq: 0,
            },
        );
    }

    fn on_track_ended(&mut self, _room: &RoomContext, sid: &str) {
        let mut state = self.state();
        state.track_off(sid, unix_ms() as i64);
        state.tracks.remove(sid);
    }

    fn on_room_event(&mut self, _room: &RoomContext, event: &RoomEvent) {
        let now = unix_ms() as i64;
        let mut state = self.state();
        match event {
            RoomEvent::TrackMuted { sid, .. } => state.track_off(sid, now),
            RoomEvent::TrackUnmuted { sid, .. } => {
                if let Some(t) = state.tracks.get_mut(sid) {
                    t.on_since.get_or_insert(now);
                }
            }
            RoomEvent::ConnectionQualityChanged { identity, quality } => {
                if let Some(p) = state.people.get_mut(identity) {
                    match (is_poor(p.quality), is_poor(*quality)) {
                        (false, true) => POOR.inc(),
                        (true, false) => POOR.dec(),
                        _ => {}
                    }
                    p.quality = *quality;
                }
            }
            _ => {}
        }
    }

    fn finish(self: Box<Self>, room: &mut RoomContext) -> FinishFuture {
        let name = room.name.clone();
        let _ = self.stop.send(true);
        Box::pin(async move {
            let mut task = self.task;
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                task.abort();
                tracing::warn!(room = %name, "call quality: the last samples were not written in time");
            }
            let rows = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for p in state.people.values_mut() {
                    if is_poor(p.quality) {
                        POOR.dec();
                        p.quality = ConnectionQuality::QualityExcellent;
                    }
                }
                state.engagement(unix_ms() as i64)
            };
            if let Err(e) = self
                .store
                .save_engagement(&self.meeting_id, &name, &rows)
                .await
            {
                tracing::warn!(room = %name, error = %e, "call quality: engagement not written");
            }
            let Some(log) = self.log else { return };
            match self.store.quality_samples(&self.meeting_id).await {
                Ok(samples) => {
                    let section = moments::summary_section(&samples, &self.config);
                    if !section.is_empty() {
                        log.summary_section(section);
                    }
                }
                Err(e) => {
                    tracing::warn!(room = %name, error = %e, "call quality: no summary section (store)")
                }
            }
        })
    }
}

/// The room's sampling task: reads every followed track's statistics each interval and writes
/// the figures.
struct Sampler {
    room: Arc<Room>,
    store: Store,
    config: CallQualityConfig,
    meeting_id: String,
    room_name: String,
    state: Arc<Mutex<State>>,
    /// Rows not yet stored.
    pending: Vec<QualitySample>,
    ticks: u64,
}

impl Sampler {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.interval_secs.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample().await,
                _ = stopped.changed() => break,
            }
        }
        self.write().await;
    }

    async fn sample(&mut self) {
        let sids: Vec<String> = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.tracks.keys().cloned().collect()
        };
        for sid in sids {
            let totals = match self.room.inbound_stats(&sid).await {
                Ok(Some(totals)) => totals,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(room = %self.room_name, %sid, error = %e, "call quality: no statistics");
                    continue;
                }
            };
            let now = unix_ms() as i64;
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let cap_track = i64::from(self.config.max_samples_per_track);
            let State { people, tracks } = &mut *state;
            let Some(track) = tracks.get_mut(&sid) else {
                continue;
            };
            let Some(person) = people.get_mut(&track.participant) else {
                continue;
            };
            let Some(sample) = figures(track, person, &sid, totals, now) else {
                continue;
            };
            person.engagement.bytes_received += sample.bytes;
            BYTES.inc_by(sample.bytes as u64);
            PACKETS_LOST.inc_by(sample.packets_lost as u64);
            FREEZES.inc_by(sample.freezes as u64);
            if sample.packets + sample.packets_lost > 0 {
                LOSS.observe(sample.loss_percent());
            }
            JITTER.observe(sample.jitter_ms());
            BITRATE.observe(sample.bitrate_bps() / 1000.0);
            if sample.seq >= cap_track || person.samples >= 4 * cap_track as u64 {
                DROPPED.inc();
                continue;
            }
            person.samples += 1;
            self.pending.push(sample);
        }
        self.ticks += 1;
        self.write().await;
        if self.ticks.is_multiple_of(ENGAGEMENT_EVERY) {
            let rows = {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.engagement(unix_ms() as i64)
            };
            if let Err(e) = self
                .store
                .save_engagement(&self.meeting_id, &self.room_name, &rows)
                .await
            {
                tracing::debug!(room = %self.room_name, error = %e, "call quality: engagement not written yet");
            }
        }
    }

    /// Stores what waits; kept for the next try when the store fails (bounded).
    async fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self
            .store
            .add_quality_samples(&self.meeting_id, &self.room_name, &self.pending)
            .await
        {
            Ok(()) => self.pending.clear(),
            Err(e) => {
                tracing::warn!(room = %self.room_name, error = %e, waiting = self.pending.len(), "call quality: samples not written; keeping them to retry");
                if self.pending.len() > MAX_PENDING_ROWS {
                    let excess = self.pending.len() - MAX_PENDING_ROWS;
                    self.pending.drain(..excess);
                    DROPPED.inc_by(excess as u64);
                }
            }
        }
    }
}

/// The interval's figures from two readings of the running totals (the first reading counts
/// from the track's start). A counter that went back (a new stream) counts from zero.
fn figures(
    track: &mut Tracked,
    person: &Person,
    sid: &str,
    totals: InboundTotals,
    now: i64,
) -> Option<QualitySample> {
    let last = track.last.unwrap_or_default();
    let last = if totals.packets_received < last.packets_received {
        InboundTotals::default()
    } else {
        last
    };
    let interval_ms = now - track.last_at_ms;
    track.last = Some(totals);
    track.last_at_ms = now;
    if interval_ms <= 0 {
        return None;
    }
    let delta = |new: u64, old: u64| new.saturating_sub(old) as i64;
    let sample = QualitySample {
        participant: track.participant.clone(),
        track_sid: sid.to_string(),
        kind: if track.kind == TrackKind::KindAudio {
            "audio"
        } else {
            "video"
        }
        .into(),
        source: match track.source {
            TrackSource::SourceCamera => "camera",
            TrackSource::SourceMicrophone => "microphone",
            TrackSource::SourceScreenshare => "screen_share",
            TrackSource::SourceScreenshareAudio => "screen_share_audio",
            TrackSource::SourceUnknown => "unknown",
        }
        .into(),
        seq: track.seq,
        at_ms: now,
        interval_ms,
        bytes: delta(totals.bytes_received, last.bytes_received),
        packets: delta(totals.packets_received, last.packets_received),
        packets_lost: delta(totals.packets_lost, last.packets_lost),
        jitter_us: (totals.jitter_s * 1e6).round() as i64,
        frames: delta(totals.frames_decoded, last.frames_decoded),
        width: i64::from(totals.frame_width),
        height: i64::from(totals.frame_height),
        freezes: delta(totals.freeze_count, last.freeze_count),
        freeze_ms: ((totals.total_freeze_duration_s - last.total_freeze_duration_s).max(0.0)
            * 1000.0)
            .round() as i64,
        quality: quality_name(person.quality).into(),
    };
    track.seq += 1;
    Some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            engagement: Engagement::default(),
            present: true,
            quality: ConnectionQuality::QualityPoor,
            speech: Arc::default(),
            samples: 0,
        }
    }

    #[test]
    fn a_sample_is_the_difference_of_two_readings() {
        let mut track = Tracked {
            participant: "ann".into(),
            kind: TrackKind::KindVideo,
            source: TrackSource::SourceCamera,
            on_since: Some(0),
            last: None,
            last_at_ms: 1_000,
            seq: 0,
        };
        let reading = |bytes, packets, lost, frames, freezes, freeze_s| InboundTotals {
            bytes_received: bytes,
            packets_received: packets,
            packets_lost: lost,
            jitter_s: 0.012,
            frames_decoded: frames,
            frame_width: 640,
            frame_height: 360,
            freeze_count: freezes,
            total_freeze_duration_s: freeze_s,
            ..Default::default()
        };
        let p = person();
        let first = figures(
            &mut track,
            &p,
            "TR",
            reading(1000, 10, 0, 30, 0, 0.0),
            2_000,
        )
        .unwrap();
        assert_eq!(
            (first.seq, first.bytes, first.frames, first.interval_ms),
            (0, 1000, 30, 1000)
        );
        let second = figures(
            &mut track,
            &p,
            "TR",
            reading(3000, 30, 5, 40, 2, 1.5),
            3_000,
        )
        .unwrap();
        assert_eq!(
            (
                second.seq,
                second.bytes,
                second.packets,
                second.packets_lost
            ),
            (1, 2000, 20, 5)
        );
        assert_eq!(
            (second.frames, second.freezes, second.freeze_ms),
            (10, 2, 1500)
        );
        assert_eq!(
            (second.jitter_us, second.quality.as_str()),
            (12_000, "poor")
        );
        assert_eq!(second.loss_percent(), 20.0);
        assert_eq!(second.fps(), 10.0);
        // A new stream starts its counters again: counted from zero, never negative.
        let reset = figures(&mut track, &p, "TR", reading(500, 5, 0, 3, 0, 0.0), 4_000).unwrap();
        assert_eq!((reset.bytes, reset.packets, reset.frames), (500, 5, 3));
    }

    #[test]
    fn engagement_counts_shown_tracks_up_to_now_and_caps_people() {
        let mut state = State::default();
        assert!(state.person("ann", 1).is_some());
        assert!(state.person("bob", 1).is_none(), "past the room's cap");
        let ann = state.person("ann", 1).unwrap();
        ann.present = true;
        ann.speech.store(150, Ordering::Relaxed);
        state.tracks.insert(
            "cam".into(),
            Tracked {
                participant: "ann".into(),
                kind: TrackKind::KindVideo,
                source: TrackSource::SourceCamera,
                on_since: Some(1_000),
                last: None,
                last_at_ms: 0,
                seq: 0,
            },
        );
        state.track_off("cam", 4_000); // muted after 3 s
        state.tracks.get_mut("cam").unwrap().on_since = Some(10_000);
        let rows = state.engagement(12_000);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].camera_ms, rows[0].speaking_ms), (5_000, 1_500));
        assert_eq!(rows[0].last_seen_ms, 12_000);
    }
}
