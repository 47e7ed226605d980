//! A meeting's worst call-quality moments, from its samples: runs of bad samples of one
//! participant's track (freezes, packet loss or jitter above the thresholds, video far below its
//! usual frame rate, a poor or lost connection), described in words with UTC wall-clock times
//! for the summary ("bob's video froze 3 times between 12:04 and 12:07 UTC").

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::CallQualityConfig;
use crate::store::QualitySample;

/// Moments named in the summary at most (the worst ones).
pub const MAX_MOMENTS: usize = 5;
/// Fewer packets than this in a sample say too little about its loss.
const MIN_PACKETS: i64 = 20;
/// A track whose usual frame rate is below this is a still picture or a slide: no drop.
const MIN_USUAL_FPS: f64 = 5.0;

/// One run of bad samples of one track.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Moment {
    pub participant: String,
    pub track_sid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// Unix ms: the start of the first bad sample's interval, the end of the last one's.
    pub from_ms: i64,
    pub to_ms: i64,
    pub freezes: i64,
    pub freeze_ms: i64,
    pub max_loss_percent: f64,
    pub max_jitter_ms: f64,
    /// Video: the lowest frame rate, when it fell below the threshold, and the usual one.
    pub min_fps: Option<f64>,
    pub usual_fps: Option<f64>,
    /// The connection was poor or lost.
    pub poor_connection: bool,
    /// The moment in words.
    pub text: String,
}

impl Moment {
    /// How bad it was, for choosing the worst: freezes and lost time weigh most.
    fn severity(&self) -> f64 {
        let seconds = (self.to_ms - self.from_ms) as f64 / 1000.0;
        self.freezes as f64 * 10.0
            + self.freeze_ms as f64 / 100.0
            + self.max_loss_percent * 2.0
            + self.max_jitter_ms / 10.0
            + if self.min_fps.is_some() { 5.0 } else { 0.0 }
            + if self.poor_connection { 5.0 } else { 0.0 }
            + seconds / 10.0
    }
}

/// What was bad in one sample (none: a good one).
#[derive(Default)]
struct Bad {
    loss: Option<f64>,
    jitter: Option<f64>,
    fps: Option<f64>,
    poor: bool,
}

fn judge(s: &QualitySample, usual_fps: Option<f64>, config: &CallQualityConfig) -> Option<Bad> {
    let mut bad = Bad::default();
    let loss = s.loss_percent();
    if s.packets + s.packets_lost >= MIN_PACKETS && loss > config.loss_percent {
        bad.loss = Some(loss);
    }
    if s.jitter_ms() > config.jitter_ms {
        bad.jitter = Some(s.jitter_ms());
    }
    if let Some(usual) = usual_fps
        && s.fps() < usual * config.fps_drop_percent / 100.0
    {
        bad.fps = Some(s.fps());
    }
    bad.poor = matches!(s.quality.as_str(), "poor" | "lost");
    (s.freezes > 0 || bad.loss.is_some() || bad.jitter.is_some() || bad.fps.is_some() || bad.poor)
        .then_some(bad)
}

/// A video track's usual frame rate: the median of its samples' (none for audio or a still).
fn usual_fps(samples: &[&QualitySample]) -> Option<f64> {
    let mut fps: Vec<f64> = samples
        .iter()
        .filter(|s| s.kind == "video")
        .map(|s| s.fps())
        .collect();
    if fps.is_empty() {
        return None;
    }
    fps.sort_by(f64::total_cmp);
    let median = fps[fps.len() / 2];
    (median >= MIN_USUAL_FPS).then_some(median)
}

/// Every run of bad samples, in time order.
pub fn moments(samples: &[QualitySample], config: &CallQualityConfig) -> Vec<Moment> {
    let mut tracks: BTreeMap<&str, Vec<&QualitySample>> = BTreeMap::new();
    for s in samples {
        tracks.entry(&s.track_sid).or_default().push(s);
    }
    let mut found = Vec::new();
    for track in tracks.values_mut() {
        track.sort_by_key(|s| s.seq);
        let usual = usual_fps(track);
        let mut open: Option<Moment> = None;
        let mut last_seq = None;
        for s in track.iter() {
            let follows = last_seq.is_some_and(|l: i64| s.seq == l + 1);
            last_seq = Some(s.seq);
            let Some(bad) = judge(s, usual, config) else {
                found.extend(open.take());
                continue;
            };
            if !follows {
                found.extend(open.take());
            }
            let m = open.get_or_insert_with(|| Moment {
                participant: s.participant.clone(),
                track_sid: s.track_sid.clone(),
                kind: s.kind.clone(),
                from_ms: s.at_ms - s.interval_ms,
                to_ms: s.at_ms,
                freezes: 0,
                freeze_ms: 0,
                max_loss_percent: 0.0,
                max_jitter_ms: 0.0,
                min_fps: None,
                usual_fps: None,
                poor_connection: false,
                text: String::new(),
            });
            m.to_ms = s.at_ms;
            m.freezes += s.freezes;
            m.freeze_ms += s.freeze_ms;
            m.max_loss_percent = m.max_loss_percent.max(bad.loss.unwrap_or(0.0));
            m.max_jitter_ms = m.max_jitter_ms.max(bad.jitter.unwrap_or(0.0));
            if let Some(fps) = bad.fps {
                m.min_fps = Some(m.min_fps.map_or(fps, |f: f64| f.min(fps)));
                m.usual_fps = usual;
            }
            m.poor_connection |= bad.poor;
        }
        found.extend(open);
    }
    for m in &mut found {
        m.text = describe(m);
    }
    found.sort_by(|a, b| {
        a.from_ms
            .cmp(&b.from_ms)
            .then(a.participant.cmp(&b.participant))
    });
    found
}

/// The worst [`MAX_MOMENTS`] of `moments`, in time order.
pub fn worst(mut moments: Vec<Moment>) -> Vec<Moment> {
    moments.sort_by(|a, b| b.severity().total_cmp(&a.severity()));
    moments.truncate(MAX_MOMENTS);
    moments.sort_by(|a, b| {
        a.from_ms
            .cmp(&b.from_ms)
            .then(a.participant.cmp(&b.participant))
    });
    moments
}

/// `HH:MM` UTC of a Unix ms time.
fn hh_mm(ms: i64) -> String {
    crate::summary::utc_time(ms)[11..].to_string()
}

fn describe(m: &Moment) -> String {
    let mut what = Vec::new();
    if m.freezes > 0 {
        let times = if m.freezes == 1 {
            "once".to_string()
        } else {
            format!("{} times", m.freezes)
        };
        // The library the agent runs on reports no freeze duration (always 0) in some
        // versions: then the count alone.
        what.push(if m.freeze_ms > 0 {
            format!(
                "froze {times} ({:.1} s in all)",
                m.freeze_ms as f64 / 1000.0
            )
        } else {
            format!("froze {times}")
        });
    }
    if let (Some(min), Some(usual)) = (m.min_fps, m.usual_fps) {
        what.push(format!("dropped to {min:.0} fps (usually {usual:.0})"));
    }
    if m.max_loss_percent > 0.0 {
        what.push(format!(
            "lost up to {:.0}% of its packets",
            m.max_loss_percent
        ));
    }
    if m.max_jitter_ms > 0.0 {
        what.push(format!("had {:.0} ms of jitter", m.max_jitter_ms));
    }
    if m.poor_connection {
        what.push("had a poor connection".to_string());
    }
    let (from, to) = (hh_mm(m.from_ms), hh_mm(m.to_ms));
    let when = if from == to {
        format!("at {from} UTC")
    } else {
        format!("between {from} and {to} UTC")
    };
    format!("{}'s {} {} {when}", m.participant, m.kind, join_and(&what))
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The summary's "Call quality" section: the worst moments, or nothing when none was notable.
pub fn summary_section(samples: &[QualitySample], config: &CallQualityConfig) -> String {
    let worst = worst(moments(samples, config));
    if worst.is_empty() {
        return String::new();
    }
    let lines: String = worst.iter().map(|m| format!("- {}\n", m.text)).collect();
    format!("\nCall quality\n{lines}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23 12:00 UTC.
    const NOON: i64 = 1_795_435_200_000;

    fn video(who: &str, seq: i64, frames: i64, freezes: i64) -> QualitySample {
        QualitySample {
            participant: who.into(),
            track_sid: format!("TR_{who}_v"),
            kind: "video".into(),
            source: "camera".into(),
            seq,
            at_ms: NOON + (seq + 1) * 60_000,
            interval_ms: 60_000,
            bytes: 1_000_000,
            packets: 1000,
            packets_lost: 0,
            jitter_us: 2_000,
            frames,
            width: 640,
            height: 360,
            freezes,
            freeze_ms: freezes * 700,
            quality: "excellent".into(),
        }
    }

    fn audio(who: &str, seq: i64, lost: i64) -> QualitySample {
        QualitySample {
            track_sid: format!("TR_{who}_a"),
            kind: "audio".into(),
            source: "microphone".into(),
            frames: 0,
            freezes: 0,
            freeze_ms: 0,
            packets: 3000 - lost,
            packets_lost: lost,
            ..video(who, seq, 0, 0)
        }
    }

    #[test]
    fn a_good_meeting_has_no_section() {
        let config = CallQualityConfig::default();
        let samples: Vec<_> = (0..10)
            .map(|i| video("ann", i, 1800, 0))
            .chain((0..10).map(|i| audio("ann", i, 3)))
            .collect();
        assert!(moments(&samples, &config).is_empty());
        assert_eq!(summary_section(&samples, &config), "");
    }

    #[test]
    fn freezes_and_a_frame_rate_drop_make_one_moment_with_wall_clock_times() {
        let config = CallQualityConfig::default();
        let mut samples: Vec<_> = (0..10).map(|i| video("bob", i, 1800, 0)).collect();
        // 12:04 to 12:07: three freezes and a third of the frames.
        samples[4] = video("bob", 4, 600, 2);
        samples[5] = video("bob", 5, 500, 1);
        samples[6] = video("bob", 6, 1700, 0);
        let found = moments(&samples, &config);
        assert_eq!(found.len(), 1, "{found:?}");
        let m = &found[0];
        assert_eq!((m.freezes, m.freeze_ms), (3, 2100));
        assert_eq!(m.usual_fps, Some(30.0));
        assert!((m.min_fps.unwrap() - 500.0 / 60.0).abs() < 1e-9);
        assert_eq!(
            m.text,
            "bob's video froze 3 times (2.1 s in all) and dropped to 8 fps (usually 30) between 12:04 and 12:06 UTC"
        );
        let section = summary_section(&samples, &config);
        assert!(
            section.starts_with("\nCall quality\n- bob's video froze 3 times"),
            "{section}"
        );
    }

    #[test]
    fn loss_jitter_and_poor_connections_count_and_the_worst_are_kept() {
        let config = CallQualityConfig::default();
        let mut samples = Vec::new();
        for (i, who) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            let mut s = audio(who, 0, 30 * (i as i64 + 1)); // 1% .. 7% lost
            s.at_ms += i as i64 * 120_000;
            samples.push(s);
        }
        // Only losses above 5 % are bad: f (6 %) and g (7 %).
        assert_eq!(moments(&samples, &config).len(), 2);
        let mut jittery = audio("h", 1, 0);
        jittery.jitter_us = 80_000;
        let mut poor = audio("i", 1, 0);
        poor.quality = "poor".into();
        let few = {
            let mut s = audio("j", 1, 5);
            s.packets = 5; // 50 % of too few packets
            s
        };
        samples.extend([jittery, poor, few]);
        let found = moments(&samples, &config);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found
                .iter()
                .any(|m| m.text == "h's audio had 80 ms of jitter between 12:01 and 12:02 UTC")
        );
        assert!(
            found
                .iter()
                .any(|m| m.text.starts_with("i's audio had a poor connection"))
        );
        assert!(
            found
                .iter()
                .any(|m| m.text.starts_with("g's audio lost up to 7% of its packets"))
        );
        let mut many = samples.clone();
        for i in 0..8 {
            many.push(video("z", i * 2, 100, 5));
        }
        let kept = worst(moments(&many, &config));
        assert_eq!(kept.len(), MAX_MOMENTS);
        let mut unknown_length = video("y", 0, 1800, 2);
        unknown_length.freeze_ms = 0;
        assert!(
            moments(&[unknown_length], &config)[0]
                .text
                .starts_with("y's video froze 2 times between")
        );
        assert!(
            kept.iter().all(|m| m.participant == "z"),
            "freezes weigh most"
        );
        assert!(kept.windows(2).all(|w| w[0].from_ms <= w[1].from_ms));
    }

    #[test]
    fn thresholds_come_from_the_configuration() {
        let mut config = CallQualityConfig::default();
        let samples = [audio("a", 0, 90)]; // 3 %
        assert!(moments(&samples, &config).is_empty());
        config.loss_percent = 2.0;
        assert_eq!(moments(&samples, &config).len(), 1);
    }
}
