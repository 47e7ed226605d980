//! Meeting summaries: key points, decisions and action items (extractive by default, offline and
//! keyless), plus the figures that need no model: attendance, duration, speaking time per
//! participant and participant count over time.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::store::Segment;

pub mod extractive;
pub mod llm;

/// Someone joining or leaving, in ms since the meeting started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Presence {
    pub identity: String,
    pub at_ms: i64,
    pub joined: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attendance {
    pub identity: String,
    pub joined_ms: i64,
    /// `None`: still there when the meeting ended.
    pub left_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionItem {
    /// Who said they would, or who was asked; `None` when nobody was named.
    pub owner: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub key_points: Vec<String>,
    pub decisions: Vec<String>,
    pub action_items: Vec<ActionItem>,
    pub attendance: Vec<Attendance>,
    pub duration_ms: i64,
    /// Per participant, most first.
    pub speaking_ms: Vec<(String, i64)>,
    /// (ms since start, participants present) at every change.
    pub participant_count: Vec<(i64, usize)>,
    pub recording_link: Option<String>,
}

/// The figures every summary has, whatever wrote its key points.
pub fn analytics(segments: &[Segment], presence: &[Presence], duration_ms: i64) -> Summary {
    let mut attendance: Vec<Attendance> = Vec::new();
    let mut count = Vec::new();
    let mut present: HashMap<&str, usize> = HashMap::new();
    // In time order, whatever order they were reported in.
    let mut ordered: Vec<&Presence> = presence.iter().collect();
    ordered.sort_by_key(|p| p.at_ms);
    for p in ordered {
        if p.joined {
            *present.entry(&p.identity).or_default() += 1;
            if !attendance.iter().any(|a| a.identity == p.identity) {
                attendance.push(Attendance {
                    identity: p.identity.clone(),
                    joined_ms: p.at_ms,
                    left_ms: None,
                });
            }
        } else if let Some(n) = present.get_mut(p.identity.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                present.remove(p.identity.as_str());
                if let Some(a) = attendance.iter_mut().find(|a| a.identity == p.identity) {
                    a.left_ms = Some(p.at_ms);
                }
            }
        }
        // A rejoin clears the leave time.
        if p.joined
            && let Some(a) = attendance.iter_mut().find(|a| a.identity == p.identity)
        {
            a.left_ms = None;
        }
        let now = present.len();
        match count.last_mut() {
            Some((t, n)) if *t == p.at_ms => *n = now,
            Some((_, n)) if *n == now => {}
            _ => count.push((p.at_ms, now)),
        }
    }
    let mut speaking: BTreeMap<&str, i64> = BTreeMap::new();
    for s in segments {
        *speaking.entry(&s.speaker).or_default() += (s.end_ms - s.start_ms).max(0);
    }
    let mut speaking_ms: Vec<(String, i64)> = speaking
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    speaking_ms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Summary {
        key_points: Vec::new(),
        decisions: Vec::new(),
        action_items: Vec::new(),
        attendance,
        duration_ms,
        speaking_ms,
        participant_count: count,
        recording_link: None,
    }
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `YYYY-MM-DD HH:MM` of a Unix ms time, UTC.
pub fn utc_time(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3_600_000,
        rest / 60_000 % 60
    )
}

/// Midnight UTC of a `YYYY-MM-DD` day (years 1970 to 9999), Unix ms.
pub fn parse_day_ms(day: &str) -> Option<i64> {
    let mut parts = day.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm); bounded above, checked anyway.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.checked_sub(era.checked_mul(400)?)?;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)?
        .checked_mul(86_400_000)
}

impl Summary {
    /// The summary as a chat message.
    pub fn to_message_text(&self, room: &str) -> String {
        let mut out = format!(
            "Meeting summary: {room}, {} long\n",
            clock(self.duration_ms)
        );
        let mut section = |title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                out.push_str(&format!("\n{title}\n"));
                for l in lines {
                    out.push_str(&format!("- {l}\n"));
                }
            }
        };
        section("Key points", self.key_points.clone());
        section("Decisions", self.decisions.clone());
        section(
            "Action items",
            self.action_items
                .iter()
                .map(|a| match &a.owner {
                    Some(o) => format!("{o}: {}", a.text),
                    None => a.text.clone(),
                })
                .collect(),
        );
        section(
            "Attendance",
            self.attendance
                .iter()
                .map(|a| match a.left_ms {
                    Some(l) => format!("{}: {} to {}", a.identity, clock(a.joined_ms), clock(l)),
                    None => format!("{}: {} to the end", a.identity, clock(a.joined_ms)),
                })
                .collect(),
        );
        let total: i64 = self.speaking_ms.iter().map(|s| s.1).sum();
        section(
            "Speaking time",
            self.speaking_ms
                .iter()
                .map(|(who, ms)| {
                    format!(
                        "{who}: {} ({:.0}%)",
                        clock(*ms),
                        100.0 * *ms as f64 / total.max(1) as f64
                    )
                })
                .collect(),
        );
        section(
            "Participants over time",
            self.participant_count
                .iter()
                .map(|(t, n)| format!("{}: {n}", clock(*t)))
                .collect(),
        );
        if let Some(link) = &self.recording_link {
            section("Recording", vec![link.clone()]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(speaker: &str, start: i64, end: i64) -> Segment {
        Segment {
            key: format!("{speaker}{start}"),
            speaker: speaker.into(),
            text: "x".into(),
            start_ms: start,
            end_ms: end,
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00");
        assert_eq!(utc_time(1_795_564_800_000 + 3_723_000), "2026-11-25 01:02");
        assert_eq!(utc_time(1_709_164_800_000), "2024-02-29 00:00");
    }

    #[test]
    fn days_parse_to_utc_midnight() {
        assert_eq!(parse_day_ms("1970-01-01"), Some(0));
        assert_eq!(parse_day_ms("2026-11-25"), Some(1_795_564_800_000));
        assert_eq!(parse_day_ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_day_ms("9999-12-31"), Some(253_402_214_400_000));
        for bad in [
            "2026-13-01",
            "2026-11",
            "yesterday",
            "2026-11-25-1",
            // Wrapped silently before (year * 365 * 86_400_000 overflows i64).
            "9223372036854775807-12-31",
            "-9223372036854775808-01-01",
            "10000-01-01",
            "1969-12-31",
        ] {
            assert_eq!(parse_day_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn attendance_speaking_time_and_head_count() {
        let presence = [
            Presence {
                identity: "ann".into(),
                at_ms: 0,
                joined: true,
            },
            Presence {
                identity: "bob".into(),
                at_ms: 5_000,
                joined: true,
            },
            Presence {
                identity: "ann".into(),
                at_ms: 60_000,
                joined: false,
            },
            Presence {
                identity: "cy".into(),
                at_ms: 70_000,
                joined: true,
            },
        ];
        let s = analytics(
            &[
                seg("ann", 0, 4_000),
                seg("bob", 6_000, 16_000),
                seg("ann", 20_000, 21_000),
            ],
            &presence,
            90_000,
        );
        assert_eq!(
            s.speaking_ms,
            vec![("bob".into(), 10_000), ("ann".into(), 5_000)]
        );
        assert_eq!(
            s.participant_count,
            vec![(0, 1), (5_000, 2), (60_000, 1), (70_000, 2)]
        );
        assert_eq!(s.attendance[0].left_ms, Some(60_000));
        // Reported out of order (offline processing reports per participant): the same figures.
        let mut shuffled = presence.to_vec();
        shuffled.reverse();
        let again = analytics(&[], &shuffled, 90_000);
        assert_eq!(again.participant_count, s.participant_count);
        assert_eq!(s.attendance[1].left_ms, None);
        let text = s.to_message_text("standup");
        assert!(text.contains("1:30 long"), "{text}");
        assert!(text.contains("bob: 0:10 (67%)"), "{text}");
        assert!(text.contains("ann: 0:00 to 1:00"), "{text}");
    }
}
