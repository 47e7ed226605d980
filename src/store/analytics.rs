//! Usage across meetings: how many, how long, when (hour of day and weekday, UTC), which rooms,
//! the bytes the agent received, and each participant's engagement summed over the meetings.
//! The store reads the rows of a time range (bounded); [`Usage::compute`] does the arithmetic.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::quality::{Engagement, engagement_of};
use super::{Store, StoreError, on_both};

/// Meetings read for one usage answer at most; past it the answer says `truncated`.
pub const MAX_MEETINGS: i64 = 10_000;
/// Participants listed in one usage answer at most (the most engaged first).
pub const MAX_PARTICIPANTS: usize = 200;

/// A meeting as usage counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingSpan {
    pub id: String,
    pub room: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub from_ms: i64,
    pub to_ms: i64,
    pub meetings: usize,
    /// Meetings not ended yet (left out of the durations).
    pub open_meetings: usize,
    pub total_minutes: f64,
    pub average_duration_secs: f64,
    pub median_duration_secs: f64,
    /// Per UTC day of a meeting's start.
    pub days: Vec<DayUsage>,
    /// Meeting minutes in each UTC hour of the day (0 to 23).
    pub minutes_by_hour: Vec<f64>,
    /// Meeting minutes on each UTC weekday, Monday first.
    pub minutes_by_weekday: Vec<f64>,
    pub peak_hour: Option<u32>,
    /// 0: Monday.
    pub peak_weekday: Option<u32>,
    pub rooms: Vec<RoomUsage>,
    pub bytes_received: i64,
    pub participants: Vec<ParticipantUsage>,
    /// More meetings than one answer reads ([`MAX_MEETINGS`]) or participants than it lists.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub meetings: usize,
    /// Different participants in that day's meetings.
    pub participants: usize,
    /// Most participants in one of them.
    pub peak_participants: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoomUsage {
    pub room: String,
    pub meetings: usize,
    pub minutes: f64,
    pub bytes_received: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ParticipantUsage {
    pub participant: String,
    pub meetings: usize,
    pub speaking_secs: f64,
    pub camera_secs: f64,
    pub screen_secs: f64,
    pub joins: i64,
    pub leaves: i64,
    pub bytes_received: i64,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

impl Usage {
    /// The usage of `meetings` (started in `from_ms..to_ms`), their engagement rows and the
    /// bytes received per room.
    pub fn compute(
        from_ms: i64,
        to_ms: i64,
        meetings: &[MeetingSpan],
        engagement: &[(String, Engagement)],
        bytes_by_room: &[(String, i64)],
    ) -> Self {
        let mut usage = Usage {
            from_ms,
            to_ms,
            meetings: meetings.len(),
            minutes_by_hour: vec![0.0; 24],
            minutes_by_weekday: vec![0.0; 7],
            ..Default::default()
        };
        let mut people: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (meeting, e) in engagement {
            people
                .entry(meeting.as_str())
                .or_default()
                .insert(e.participant.as_str());
        }
        let mut durations = Vec::new();
        let mut rooms: BTreeMap<&str, RoomUsage> = BTreeMap::new();
        let mut days: BTreeMap<String, (usize, BTreeSet<&str>, usize)> = BTreeMap::new();
        for m in meetings {
            let room = rooms.entry(&m.room).or_insert_with(|| RoomUsage {
                room: m.room.clone(),
                meetings: 0,
                minutes: 0.0,
                bytes_received: 0,
            });
            room.meetings += 1;
            let here = people.get(m.id.as_str());
            let day = days
                .entry(crate::summary::utc_time(m.started_at_ms)[..10].to_string())
                .or_default();
            day.0 += 1;
            day.1.extend(here.into_iter().flatten());
            day.2 = day.2.max(here.map_or(0, BTreeSet::len));
            let Some(end) = m.ended_at_ms.filter(|&e| e >= m.started_at_ms) else {
                usage.open_meetings += 1;
                continue;
            };
            durations.push(end - m.started_at_ms);
            room.minutes += (end - m.started_at_ms) as f64 / 60_000.0;
            // Minutes into the hours (and so weekdays) they were spent in.
            let mut at = m.started_at_ms;
            while at < end {
                let next = ((at.div_euclid(HOUR_MS) + 1) * HOUR_MS).min(end);
                let minutes = (next - at) as f64 / 60_000.0;
                usage.minutes_by_hour[at.rem_euclid(DAY_MS) as usize / HOUR_MS as usize] += minutes;
                // 1970-01-01 was a Thursday (3 with Monday as 0).
                usage.minutes_by_weekday[(at.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize] +=
                    minutes;
                at = next;
            }
        }
        usage.total_minutes = durations.iter().sum::<i64>() as f64 / 60_000.0;
        if !durations.is_empty() {
            durations.sort_unstable();
            usage.average_duration_secs =
                durations.iter().sum::<i64>() as f64 / durations.len() as f64 / 1000.0;
            let mid = durations.len() / 2;
            usage.median_duration_secs = if durations.len() % 2 == 0 {
                (durations[mid - 1] + durations[mid]) as f64 / 2000.0
            } else {
                durations[mid] as f64 / 1000.0
            };
        }
        usage.peak_hour = peak(&usage.minutes_by_hour);
        usage.peak_weekday = peak(&usage.minutes_by_weekday);
        for (room, bytes) in bytes_by_room {
            usage.bytes_received += bytes;
            if let Some(r) = rooms.get_mut(room.as_str()) {
                r.bytes_received = *bytes;
            }
        }
        usage.rooms = rooms.into_values().collect();
        usage.days = days
            .into_iter()
            .map(|(day, (meetings, people, peak))| DayUsage {
                day,
                meetings,
                participants: people.len(),
                peak_participants: peak,
            })
            .collect();
        let mut participants: BTreeMap<&str, ParticipantUsage> = BTreeMap::new();
        for (_, e) in engagement {
            let p = participants
                .entry(&e.participant)
                .or_insert_with(|| ParticipantUsage {
                    participant: e.participant.clone(),
                    ..Default::default()
                });
            p.meetings += 1;
            p.speaking_secs += e.speaking_ms as f64 / 1000.0;
            p.camera_secs += e.camera_ms as f64 / 1000.0;
            p.screen_secs += e.screen_ms as f64 / 1000.0;
            p.joins += e.joins;
            p.leaves += e.leaves;
            p.bytes_received += e.bytes_received;
        }
        let mut participants: Vec<_> = participants.into_values().collect();
        participants.sort_by(|a, b| {
            b.speaking_secs
                .total_cmp(&a.speaking_secs)
                .then(a.participant.cmp(&b.participant))
        });
        usage.truncated = participants.len() > MAX_PARTICIPANTS;
        participants.truncate(MAX_PARTICIPANTS);
        usage.participants = participants;
        usage
    }
}

/// The index of the largest value, if any is above 0 (the first of equals).
fn peak(values: &[f64]) -> Option<u32> {
    let (i, &max) = values
        .iter()
        .enumerate()
        .reduce(|best, v| if v.1 > best.1 { v } else { best })?;
    (max > 0.0).then_some(i as u32)
}

type SpanRow = (String, String, i64, Option<i64>);
type EngagementRow = (String, String, i64, i64, i64, i64, i64, i64, i64, i64);

impl Store {
    /// Usage of the meetings that started in `from_ms..to_ms`, of one room or all.
    pub async fn usage(
        &self,
        from_ms: i64,
        to_ms: i64,
        room: Option<&str>,
    ) -> Result<Usage, StoreError> {
        let spans: Vec<SpanRow> = on_both!(
            self,
            fetch_all,
            SpanRow,
            "SELECT id, room, started_at, ended_at FROM meetings WHERE started_at >= ?1 AND started_at < ?2 AND (?3 IS NULL OR room = ?3) ORDER BY started_at LIMIT ?4",
            "SELECT id, room, (extract(epoch from started_at) * 1000)::bigint, (extract(epoch from ended_at) * 1000)::bigint FROM meetings \
             WHERE started_at >= to_timestamp($1::bigint / 1000.0) AND started_at < to_timestamp($2::bigint / 1000.0) AND ($3::text IS NULL OR room = $3) ORDER BY started_at LIMIT $4",
            from_ms,
            to_ms,
            room,
            MAX_MEETINGS + 1
        )?;
        let truncated = spans.len() as i64 > MAX_MEETINGS;
        let meetings: Vec<MeetingSpan> = spans
            .into_iter()
            .take(MAX_MEETINGS as usize)
            .map(|(id, room, started_at_ms, ended_at_ms)| MeetingSpan {
                id,
                room,
                started_at_ms,
                ended_at_ms,
            })
            .collect();
        let rows: Vec<EngagementRow> = on_both!(
            self,
            fetch_all,
            EngagementRow,
            "SELECT e.meeting_id, e.participant, e.speaking_ms, e.camera_ms, e.screen_ms, e.joins, e.leaves, e.first_seen_ms, e.last_seen_ms, e.bytes_received \
             FROM engagement e JOIN meetings m ON m.id = e.meeting_id \
             WHERE m.started_at >= ?1 AND m.started_at < ?2 AND (?3 IS NULL OR m.room = ?3)",
            "SELECT e.meeting_id, e.participant, e.speaking_ms, e.camera_ms, e.screen_ms, e.joins, e.leaves, e.first_seen_ms, e.last_seen_ms, e.bytes_received \
             FROM engagement e JOIN meetings m ON m.id = e.meeting_id \
             WHERE m.started_at >= to_timestamp($1::bigint / 1000.0) AND m.started_at < to_timestamp($2::bigint / 1000.0) AND ($3::text IS NULL OR m.room = $3)",
            from_ms,
            to_ms,
            room
        )?;
        let ids: BTreeSet<&str> = meetings.iter().map(|m| m.id.as_str()).collect();
        let engagement: Vec<(String, Engagement)> = rows
            .into_iter()
            .filter(|r| ids.contains(r.0.as_str()))
            .map(|r| {
                (
                    r.0,
                    engagement_of((r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9)),
                )
            })
            .collect();
        let bytes: Vec<(String, i64)> = on_both!(
            self,
            fetch_all,
            (String, i64),
            "SELECT room, COALESCE(SUM(bytes), 0) FROM quality_samples WHERE at_ms >= ?1 AND at_ms < ?2 AND (?3 IS NULL OR room = ?3) GROUP BY room",
            "SELECT room, COALESCE(SUM(bytes), 0)::bigint FROM quality_samples WHERE at_ms >= $1 AND at_ms < $2 AND ($3::text IS NULL OR room = $3) GROUP BY room",
            from_ms,
            to_ms,
            room
        )?;
        let mut usage = Usage::compute(from_ms, to_ms, &meetings, &engagement, &bytes);
        usage.truncated |= truncated;
        Ok(usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONDAY_0900: i64 = 1_795_424_400_000; // 2026-11-23 09:00 UTC, a Monday

    fn span(id: &str, room: &str, start: i64, minutes: Option<i64>) -> MeetingSpan {
        MeetingSpan {
            id: id.into(),
            room: room.into(),
            started_at_ms: start,
            ended_at_ms: minutes.map(|m| start + m * 60_000),
        }
    }

    fn seen(meeting: &str, who: &str, speaking_ms: i64) -> (String, Engagement) {
        (
            meeting.into(),
            Engagement {
                participant: who.into(),
                speaking_ms,
                joins: 1,
                leaves: 1,
                ..Default::default()
            },
        )
    }

    #[test]
    fn durations_hours_weekdays_rooms_and_people() {
        assert_eq!(&crate::summary::utc_time(MONDAY_0900), "2026-11-23 09:00");
        let meetings = [
            // 09:30 to 10:30 Monday: half an hour in each of two hours.
            span("a", "weekly", MONDAY_0900 + 30 * 60_000, Some(60)),
            span("b", "weekly", MONDAY_0900 + DAY_MS, Some(20)),
            span("c", "board", MONDAY_0900 + DAY_MS + 3_600_000, Some(90)),
            span("d", "board", MONDAY_0900 + 2 * DAY_MS, None),
        ];
        let engagement = [
            seen("a", "ann", 60_000),
            seen("a", "bob", 5_000),
            seen("b", "ann", 30_000),
            seen("c", "cid", 0),
        ];
        let bytes = [("weekly".to_string(), 1000), ("board".to_string(), 24)];
        let u = Usage::compute(0, i64::MAX, &meetings, &engagement, &bytes);
        assert_eq!((u.meetings, u.open_meetings), (4, 1));
        assert_eq!(u.total_minutes, 170.0);
        assert_eq!(u.median_duration_secs, 3600.0);
        assert!((u.average_duration_secs - 170.0 * 60.0 / 3.0).abs() < 1e-6);
        assert_eq!(u.minutes_by_hour[9], 30.0 + 20.0);
        assert_eq!(u.minutes_by_hour[10], 30.0 + 60.0);
        assert_eq!(u.minutes_by_hour[11], 30.0);
        assert_eq!(u.peak_hour, Some(10));
        assert_eq!(u.minutes_by_weekday[0], 60.0);
        assert_eq!(u.minutes_by_weekday[1], 110.0);
        assert_eq!(u.peak_weekday, Some(1));
        assert_eq!(u.bytes_received, 1024);
        let weekly = u.rooms.iter().find(|r| r.room == "weekly").unwrap();
        assert_eq!(
            (weekly.meetings, weekly.minutes, weekly.bytes_received),
            (2, 80.0, 1000)
        );
        assert_eq!(u.days.len(), 3);
        assert_eq!(
            (
                u.days[0].meetings,
                u.days[0].participants,
                u.days[0].peak_participants
            ),
            (1, 2, 2)
        );
        assert_eq!(u.days[1].participants, 2, "ann and cid on Tuesday");
        let ann = &u.participants[0];
        assert_eq!(
            (ann.participant.as_str(), ann.meetings, ann.speaking_secs),
            ("ann", 2, 90.0)
        );
        assert_eq!((ann.joins, ann.leaves), (2, 2));
        assert!(!u.truncated);
    }

    #[test]
    fn nothing_to_count() {
        let u = Usage::compute(0, 1, &[], &[], &[]);
        assert_eq!(
            (u.meetings, u.median_duration_secs, u.peak_hour),
            (0, 0.0, None)
        );
        assert_eq!(u.minutes_by_hour.len(), 24);
    }
}
