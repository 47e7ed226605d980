//! Call quality samples and engagement in the messaging store. A sample holds one subscribed
//! track's figures over one sampling interval (differences of WebRTC's running totals), so any
//! window's figure is a sum of rows; engagement is one row per participant per meeting,
//! replaced as the meeting goes on.

use serde::Serialize;

use super::{Store, StoreError, insert_each, on_both};

/// One subscribed track over one interval, as the agent received it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QualitySample {
    pub participant: String,
    pub track_sid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// `microphone`, `camera`, `screen_share`, `screen_share_audio` or `unknown`.
    pub source: String,
    /// The track's sample number in the meeting (0, 1, ...).
    pub seq: i64,
    /// The interval's end, Unix ms.
    pub at_ms: i64,
    pub interval_ms: i64,
    pub bytes: i64,
    pub packets: i64,
    pub packets_lost: i64,
    /// Interarrival jitter at the interval's end, microseconds.
    pub jitter_us: i64,
    /// Video: frames decoded in the interval.
    pub frames: i64,
    pub width: i64,
    pub height: i64,
    /// Video: freezes that ended in the interval, and their length (0 where the LiveKit
    /// library reports no freeze duration, as the pinned one does).
    pub freezes: i64,
    pub freeze_ms: i64,
    /// LiveKit's connection quality of the participant then: `excellent`, `good`, `poor`,
    /// `lost` or `unknown`.
    pub quality: String,
}

impl QualitySample {
    /// Received bits per second over the interval.
    pub fn bitrate_bps(&self) -> f64 {
        self.bytes as f64 * 8_000.0 / self.interval_ms.max(1) as f64
    }

    /// Share of the interval's packets lost, per cent.
    pub fn loss_percent(&self) -> f64 {
        let expected = self.packets + self.packets_lost;
        if expected <= 0 {
            0.0
        } else {
            self.packets_lost as f64 * 100.0 / expected as f64
        }
    }

    /// Frames decoded per second over the interval (video).
    pub fn fps(&self) -> f64 {
        self.frames as f64 * 1000.0 / self.interval_ms.max(1) as f64
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter_us as f64 / 1000.0
    }
}

/// What one participant did in one meeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Engagement {
    pub participant: String,
    /// Time their microphone carried speech.
    pub speaking_ms: i64,
    /// Time a camera of theirs was published and unmuted.
    pub camera_ms: i64,
    /// Time they shared a screen.
    pub screen_ms: i64,
    pub joins: i64,
    pub leaves: i64,
    /// First join and last time seen in the meeting, Unix ms.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Bytes the agent received of their tracks.
    pub bytes_received: i64,
}

/// `kind/source` read as one column: sqlx reads tuples of 16 at most.
type SampleRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
);

type EngagementRow = (String, i64, i64, i64, i64, i64, i64, i64, i64);

const SAMPLE_COLUMNS: &str = "participant, track_sid, kind || '/' || source, seq, at_ms, interval_ms, bytes, packets, packets_lost, jitter_us, frames, width, height, freezes, freeze_ms, quality";

const ENGAGEMENT_COLUMNS: &str = "participant, speaking_ms, camera_ms, screen_ms, joins, leaves, first_seen_ms, last_seen_ms, bytes_received";

impl Store {
    /// Adds samples of `meeting_id` (in `room`); a sample already stored is kept as it is.
    pub async fn add_quality_samples(
        &self,
        meeting_id: &str,
        room: &str,
        samples: &[QualitySample],
    ) -> Result<(), StoreError> {
        insert_each!(
            self,
            samples,
            "INSERT INTO quality_samples (meeting_id, room, participant, track_sid, kind, source, seq, at_ms, interval_ms, bytes, packets, packets_lost, jitter_us, frames, width, height, freezes, freeze_ms, quality) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) ON CONFLICT DO NOTHING",
            "INSERT INTO quality_samples (meeting_id, room, participant, track_sid, kind, source, seq, at_ms, interval_ms, bytes, packets, packets_lost, jitter_us, frames, width, height, freezes, freeze_ms, quality) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT DO NOTHING",
            |q, s| q
                .bind(meeting_id)
                .bind(room)
                .bind(&s.participant)
                .bind(&s.track_sid)
                .bind(&s.kind)
                .bind(&s.source)
                .bind(s.seq)
                .bind(s.at_ms)
                .bind(s.interval_ms)
                .bind(s.bytes)
                .bind(s.packets)
                .bind(s.packets_lost)
                .bind(s.jitter_us)
                .bind(s.frames)
                .bind(s.width)
                .bind(s.height)
                .bind(s.freezes)
                .bind(s.freeze_ms)
                .bind(&s.quality)
        );
        Ok(())
    }

    /// A meeting's samples, by participant, track and time.
    pub async fn quality_samples(
        &self,
        meeting_id: &str,
    ) -> Result<Vec<QualitySample>, StoreError> {
        let rows: Vec<SampleRow> = on_both!(
            self,
            fetch_all,
            SampleRow,
            &format!(
                "SELECT {SAMPLE_COLUMNS} FROM quality_samples WHERE meeting_id = ?1 ORDER BY participant, track_sid, seq"
            ),
            &format!(
                "SELECT {SAMPLE_COLUMNS} FROM quality_samples WHERE meeting_id = $1 ORDER BY participant, track_sid, seq"
            ),
            meeting_id
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let (kind, source) = r.2.split_once('/').unwrap_or((&r.2, "unknown"));
                QualitySample {
                    participant: r.0,
                    track_sid: r.1,
                    kind: kind.to_string(),
                    source: source.to_string(),
                    seq: r.3,
                    at_ms: r.4,
                    interval_ms: r.5,
                    bytes: r.6,
                    packets: r.7,
                    packets_lost: r.8,
                    jitter_us: r.9,
                    frames: r.10,
                    width: r.11,
                    height: r.12,
                    freezes: r.13,
                    freeze_ms: r.14,
                    quality: r.15,
                }
            })
            .collect())
    }

    /// Writes (or replaces) the engagement of `meeting_id`'s participants.
    pub async fn save_engagement(
        &self,
        meeting_id: &str,
        room: &str,
        rows: &[Engagement],
    ) -> Result<(), StoreError> {
        insert_each!(
            self,
            rows,
            "INSERT INTO engagement (meeting_id, room, participant, speaking_ms, camera_ms, screen_ms, joins, leaves, first_seen_ms, last_seen_ms, bytes_received) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (meeting_id, participant) DO UPDATE SET \
             speaking_ms = excluded.speaking_ms, camera_ms = excluded.camera_ms, screen_ms = excluded.screen_ms, joins = excluded.joins, \
             leaves = excluded.leaves, first_seen_ms = excluded.first_seen_ms, last_seen_ms = excluded.last_seen_ms, bytes_received = excluded.bytes_received",
            "INSERT INTO engagement (meeting_id, room, participant, speaking_ms, camera_ms, screen_ms, joins, leaves, first_seen_ms, last_seen_ms, bytes_received) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (meeting_id, participant) DO UPDATE SET \
             speaking_ms = excluded.speaking_ms, camera_ms = excluded.camera_ms, screen_ms = excluded.screen_ms, joins = excluded.joins, \
             leaves = excluded.leaves, first_seen_ms = excluded.first_seen_ms, last_seen_ms = excluded.last_seen_ms, bytes_received = excluded.bytes_received",
            |q, e| q
                .bind(meeting_id)
                .bind(room)
                .bind(&e.participant)
                .bind(e.speaking_ms)
                .bind(e.camera_ms)
                .bind(e.screen_ms)
                .bind(e.joins)
                .bind(e.leaves)
                .bind(e.first_seen_ms)
                .bind(e.last_seen_ms)
                .bind(e.bytes_received)
        );
        Ok(())
    }

    /// A meeting's engagement, by participant.
    pub async fn engagement(&self, meeting_id: &str) -> Result<Vec<Engagement>, StoreError> {
        let rows: Vec<EngagementRow> = on_both!(
            self,
            fetch_all,
            EngagementRow,
            &format!(
                "SELECT {ENGAGEMENT_COLUMNS} FROM engagement WHERE meeting_id = ?1 ORDER BY participant"
            ),
            &format!(
                "SELECT {ENGAGEMENT_COLUMNS} FROM engagement WHERE meeting_id = $1 ORDER BY participant"
            ),
            meeting_id
        )?;
        Ok(rows.into_iter().map(engagement_of).collect())
    }
}

pub(super) fn engagement_of(r: EngagementRow) -> Engagement {
    Engagement {
        participant: r.0,
        speaking_ms: r.1,
        camera_ms: r.2,
        screen_ms: r.3,
        joins: r.4,
        leaves: r.5,
        first_seen_ms: r.6,
        last_seen_ms: r.7,
        bytes_received: r.8,
    }
}
