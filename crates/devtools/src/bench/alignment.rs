//! Which end of speech a final caption belongs to, when speech is continuous and pauses are
//! short: the listener sees many ends of speech (every pause) and the agent cuts at some of
//! them, so "the first final after each pause" pairs the wrong ones as soon as a final is late
//! or two pauses fall into one utterance.
//!
//! Each final caption carries where its audio ended in the agent's stream (`end_ms` of the
//! transcription segment, audio time). Audio time and the listener's clock differ by one
//! constant offset (when the track started) plus a few frames of jitter, so the offset that
//! lines up the most finals with an end of speech the listener heard is found by trying each
//! pairing; each final's latency is then its arrival minus the end of speech it lines up with.

/// A final caption as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct FinalSeen {
    /// When it arrived, µs on the listener's clock.
    pub arrival_us: i64,
    /// Where its audio ended in the agent's stream, ms (the segment's end time).
    pub end_ms: i64,
}

/// How far an end of speech may be from where a final's end time puts it.
const TOLERANCE_US: i64 = 250_000;

/// Per final, in the order given: the end of speech it lines up with (µs) and its latency in
/// seconds (that end -> arrival), or `None` for a final no end of speech lines up with.
/// `speech_ends_us`: sorted, the listener's clock.
pub fn final_latencies(finals: &[FinalSeen], speech_ends_us: &[i64]) -> Vec<Option<(i64, f64)>> {
    let nearest = |t: i64| -> Option<i64> {
        let i = speech_ends_us.partition_point(|&e| e < t);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|k| speech_ends_us.get(k).copied())
            .min_by_key(|e| (e - t).abs())
            .filter(|e| (e - t).abs() <= TOLERANCE_US)
    };
    // The offset (listener µs - segment end µs) that lines up the most finals, then the
    // smallest total residual; among equals the earliest (the longer latencies: never flatter).
    let mut best: Option<(usize, i64, i64)> = None; // (matched, -residual, offset)
    for f in finals {
        for &end in speech_ends_us.iter().filter(|&&e| e <= f.arrival_us) {
            let offset = end - f.end_ms * 1000;
            let mut matched = 0;
            let mut residual = 0;
            for g in finals {
                let predicted = g.end_ms * 1000 + offset;
                if let Some(e) = nearest(predicted).filter(|&e| e <= g.arrival_us) {
                    matched += 1;
                    residual += (e - predicted).abs();
                }
            }
            let candidate = (matched, -residual, offset);
            if best.is_none_or(|b| (candidate.0, candidate.1) > (b.0, b.1)) {
                best = Some(candidate);
            }
        }
    }
    let Some((_, _, offset)) = best else {
        return vec![None; finals.len()];
    };
    finals
        .iter()
        .map(|f| {
            nearest(f.end_ms * 1000 + offset)
                .filter(|&e| e <= f.arrival_us)
                .map(|e| (e, (f.arrival_us - e) as f64 / 1e6))
        })
        .collect()
}

/// Speech regions `(start, end)` in a stream of 10 ms frame levels `(µs, dBFS)`: a region ends
/// with its last frame above `threshold_db` once `pause_ms` below it follow.
pub fn speech_regions(frames: &[(i64, f64)], threshold_db: f64, pause_ms: i64) -> Vec<(i64, i64)> {
    let mut regions = Vec::new();
    let mut current: Option<(i64, i64)> = None;
    for &(t, db) in frames {
        if db > threshold_db {
            current = Some(current.map_or((t, t + 10_000), |(s, _)| (s, t + 10_000)));
        } else if let Some((s, e)) = current
            && t - e >= pause_ms * 1000
        {
            regions.push((s, e));
            current = None;
        }
    }
    regions.extend(current);
    regions
}

/// The start of the speech that led to each final: the first region to begin after the end
/// the previous final lined up with (or the first region). `ends`: per final, from
/// [`final_latencies`] (end of speech, µs), `None` where it did not line up.
pub fn utterance_onsets(regions: &[(i64, i64)], ends: &[Option<i64>]) -> Vec<Option<i64>> {
    let mut previous_end = i64::MIN;
    ends.iter()
        .map(|end| {
            let end = (*end)?;
            let onset = regions
                .iter()
                .map(|r| r.0)
                .find(|&s| s > previous_end && s < end);
            previous_end = end;
            onset
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_finals_pair_with_their_own_pause() {
        // Speech ends at irregular pauses on the listener's clock (offset 10 s from audio
        // time); the agent cut at every other pause and its finals came 2 s late: later than
        // the next pause, which the naive pairing would take.
        let audio_ends_ms = [900, 2_300, 3_100, 4_900, 6_200, 7_000, 8_800, 9_500];
        let ends: Vec<i64> = audio_ends_ms
            .iter()
            .map(|e| 10_000_000 + e * 1000)
            .collect();
        let finals: Vec<FinalSeen> = [1, 3, 5, 7]
            .iter()
            .map(|&k| FinalSeen {
                end_ms: audio_ends_ms[k] + 200 - 40 * (k as i64 % 3), // kept silence, jitter
                arrival_us: ends[k] + 2_000_000,
            })
            .collect();
        let latencies = final_latencies(&finals, &ends);
        for (l, &k) in latencies.iter().zip(&[1, 3, 5, 7]) {
            assert_eq!(*l, Some((ends[k], 2.0)));
        }
    }

    #[test]
    fn nothing_lines_up_without_speech() {
        let finals = [FinalSeen {
            arrival_us: 5,
            end_ms: 1,
        }];
        assert_eq!(final_latencies(&finals, &[]), vec![None]);
    }

    #[test]
    fn regions_end_after_pauses_and_onsets_follow_finals() {
        let mut frames = Vec::new();
        for i in 0..100 {
            let loud = (10..30).contains(&i) || (40..60).contains(&i) || (80..90).contains(&i);
            frames.push((i * 10_000, if loud { -20.0 } else { -70.0 }));
        }
        let regions = speech_regions(&frames, -45.0, 50);
        assert_eq!(
            regions,
            vec![(100_000, 300_000), (400_000, 600_000), (800_000, 900_000)]
        );
        assert_eq!(speech_regions(&frames, -45.0, 150).len(), 2);
        // Finals that lined up with the second and third ends: the first covered two regions.
        let onsets = utterance_onsets(&regions, &[Some(600_000), None, Some(900_000)]);
        assert_eq!(onsets, vec![Some(100_000), None, Some(800_000)]);
    }
}
