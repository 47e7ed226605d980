//! Cuts one speaker's audio into utterances with a voice-activity detector (RNNoise's voice
//! probability, which the denoiser computes anyway) and asks for interim and final
//! transcriptions at the right moments. Pure logic: no I/O, no clock but the audio itself.

use std::collections::VecDeque;

use crate::audio::resample::MonoResampler;

#[derive(Debug, Clone)]
pub struct SegmenterConfig {
    /// Voice probability that counts as speech / as silence (hysteresis).
    pub speech_threshold: f32,
    pub silence_threshold: f32,
    /// Consecutive speech frames (10 ms) that open an utterance.
    pub start_frames: u32,
    /// Silence that closes an utterance.
    pub end_silence_ms: u32,
    /// Audio kept from before the utterance opened (onsets are quiet).
    pub pre_roll_ms: u32,
    /// An utterance longer than this is finalised and a new one begins.
    pub max_utterance_ms: u32,
    /// Utterances shorter than this are dropped (coughs, clicks).
    pub min_utterance_ms: u32,
    /// The first two interims come this far apart from the utterance's opening; later ones at
    /// the gap the caller sets ([`Segmenter::set_interim_gap`]), never closer than this.
    pub interim_every_ms: u32,
    /// Silence after which the utterance so far is offered for a speculative final (the audio
    /// a final would get if the silence holds to the endpoint); 0: no speculation. At most
    /// the trailing silence a final keeps, so both are the same audio.
    pub speculate_after_ms: u32,
}

/// Silence a final keeps at its end (onsets and offsets are quiet; whisper likes a little).
const KEPT_SILENCE_MS: u32 = 200;

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            speech_threshold: 0.6,
            silence_threshold: 0.35,
            start_frames: 3,
            end_silence_ms: 500,
            pre_roll_ms: 300,
            max_utterance_ms: 15_000,
            min_utterance_ms: 250,
            interim_every_ms: 1000,
            speculate_after_ms: KEPT_SILENCE_MS,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum SegmentEvent {
    /// The utterance so far (16 kHz mono, [-1, 1]).
    Interim { audio: Vec<f32> },
    /// Silence began: this is the final's audio if it holds to the endpoint (a
    /// [`SegmentEvent::Final`] with as many samples), unless [`SegmentEvent::Resumed`] comes
    /// first.
    Speculative { audio: Vec<f32> },
    /// Speech went on after a [`SegmentEvent::Speculative`]: that audio is not the final's.
    Resumed,
    /// A finished utterance with its position in the stream and mean voice probability.
    Final {
        audio: Vec<f32>,
        start_ms: u64,
        end_ms: u64,
        mean_voice_probability: f32,
    },
}

pub struct Segmenter {
    config: SegmenterConfig,
    to_16k: MonoResampler,
    pre_roll: VecDeque<f32>,
    utterance: Vec<f32>,
    speaking: bool,
    speech_run: u32,
    silence_ms: u32,
    since_interim_ms: u32,
    /// Stream position of the next frame.
    position_ms: u64,
    start_ms: u64,
    voice_sum: f32,
    voice_frames: u32,
    scratch: Vec<f32>,
    /// Interim cadence after the first, set by the caller from what interims cost.
    interim_gap_ms: u32,
    interims: u32,
    /// A speculative final was offered in the current silence.
    speculated: bool,
    /// Silence that ends this utterance: `end_silence_ms` unless the caller holds it open.
    endpoint_ms: u32,
}

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            pre_roll: VecDeque::with_capacity(16 * config.pre_roll_ms as usize),
            utterance: Vec::with_capacity(16 * config.max_utterance_ms as usize),
            to_16k: MonoResampler::new(48_000, 16_000).expect("48 kHz to 16 kHz is supported"),
            speaking: false,
            speech_run: 0,
            silence_ms: 0,
            since_interim_ms: 0,
            position_ms: 0,
            start_ms: 0,
            voice_sum: 0.0,
            voice_frames: 0,
            scratch: Vec::with_capacity(160),
            interim_gap_ms: config.interim_every_ms,
            interims: 0,
            speculated: false,
            endpoint_ms: config.end_silence_ms,
            config,
        }
    }

    /// Holds the current silence open until `ms` (a hypothesis that ends mid-phrase: the
    /// sentence likely goes on). The next speech sets it back.
    pub fn hold_endpoint(&mut self, ms: u32) {
        self.endpoint_ms = ms.max(self.config.end_silence_ms);
    }

    /// Interims after the first come this far apart (at least the configured cadence).
    pub fn set_interim_gap(&mut self, ms: u32) {
        self.interim_gap_ms = ms.max(self.config.interim_every_ms);
    }

    /// Whether the silence since a speculative final still holds (so its audio is the
    /// final's).
    pub fn speculation_holds(&self) -> bool {
        self.speaking && self.speculated
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Where the utterance in progress (or the last one) began in the stream, pre-roll included.
    pub fn utterance_start_ms(&self) -> u64 {
        self.start_ms
    }

    /// Silence since the last speech of the utterance in progress.
    pub fn silence_ms(&self) -> u32 {
        if self.speaking { self.silence_ms } else { 0 }
    }

    /// Feeds one 10 ms frame at 48 kHz (i16 scale) with its voice probability.
    pub fn push(&mut self, frame_48k: &[f32], voice_probability: f32) -> Option<SegmentEvent> {
        self.scratch.clear();
        let frame_i16: Vec<i16> = frame_48k.iter().map(|&s| s as i16).collect();
        let scratch = &mut self.scratch;
        self.to_16k.push(&frame_i16, 1, |out| {
            scratch.extend(out.iter().map(|s| s / 32768.0))
        });
        self.position_ms += 10;

        if !self.speaking {
            self.pre_roll.extend(self.scratch.iter());
            let keep = 16 * self.config.pre_roll_ms as usize;
            while self.pre_roll.len() > keep {
                self.pre_roll.pop_front();
            }
            self.speech_run = if voice_probability >= self.config.speech_threshold {
                self.speech_run + 1
            } else {
                0
            };
            if self.speech_run >= self.config.start_frames {
                self.speaking = true;
                self.utterance.clear();
                self.utterance.extend(self.pre_roll.drain(..));
                self.start_ms = self
                    .position_ms
                    .saturating_sub(self.utterance.len() as u64 / 16);
                (
                    self.silence_ms,
                    self.since_interim_ms,
                    self.voice_sum,
                    self.voice_frames,
                    self.interims,
                    self.speculated,
                ) = (0, 0, 0.0, 0, 0, false);
            }
            return None;
        }

        self.utterance.extend_from_slice(&self.scratch);
        self.voice_sum += voice_probability;
        self.voice_frames += 1;
        self.since_interim_ms += 10;
        self.silence_ms = if voice_probability < self.config.silence_threshold {
            self.silence_ms + 10
        } else {
            0
        };
        let length_ms = self.utterance.len() as u32 / 16;
        if self.silence_ms == 0 {
            self.endpoint_ms = self.config.end_silence_ms;
        }
        if self.silence_ms >= self.endpoint_ms || length_ms >= self.config.max_utterance_ms {
            return self.finish();
        }
        if self.speculated && self.silence_ms == 0 {
            self.speculated = false;
            return Some(SegmentEvent::Resumed);
        }
        let speculate_at = self.config.speculate_after_ms.min(KEPT_SILENCE_MS);
        if speculate_at > 0
            && !self.speculated
            && self.silence_ms >= speculate_at
            && length_ms.saturating_sub(self.silence_ms) >= self.config.min_utterance_ms
        {
            self.speculated = true;
            return Some(SegmentEvent::Speculative {
                audio: self.final_audio(),
            });
        }
        // The first two come at the configured cadence (two agreeing hypotheses commit the
        // first words), later ones at the planned gap.
        let due = if self.interims < 2 {
            self.config.interim_every_ms
        } else {
            self.interim_gap_ms
        };
        // No interim in a pause: the audio is the last one's plus silence.
        if self.since_interim_ms >= due && self.silence_ms < speculate_at.max(100) {
            self.since_interim_ms = 0;
            self.interims += 1;
            return Some(SegmentEvent::Interim {
                audio: self.utterance.clone(),
            });
        }
        None
    }

    /// The utterance as a final would take it now.
    fn final_audio(&self) -> Vec<f32> {
        self.utterance[..self.final_len()].to_vec()
    }

    /// Samples of the utterance a final keeps: trailing silence cut to [`KEPT_SILENCE_MS`].
    fn final_len(&self) -> usize {
        let trailing = (16 * self.silence_ms as usize).min(self.utterance.len());
        self.utterance.len() - trailing.saturating_sub(16 * KEPT_SILENCE_MS as usize)
    }

    /// Ends the utterance in progress (the speaker left or the track ended).
    pub fn finish(&mut self) -> Option<SegmentEvent> {
        if !self.speaking {
            return None;
        }
        self.speaking = false;
        self.speech_run = 0;
        self.speculated = false;
        // The next utterance's pre-roll starts from here: what was counted as this one's
        // silence may be the soft onset of the next word (closed early at a short pause, the
        // base model heard "Heute besprechen wir" cut after its "H" as "Ich wollte mich").
        let tail = self
            .utterance
            .len()
            .saturating_sub(16 * self.config.pre_roll_ms as usize);
        self.pre_roll.clear();
        self.pre_roll.extend(&self.utterance[tail..]);
        // Trailing silence is not part of the utterance.
        let keep = self.final_len();
        let mut audio = std::mem::take(&mut self.utterance);
        audio.truncate(keep);
        let mean = if self.voice_frames == 0 {
            0.0
        } else {
            self.voice_sum / self.voice_frames as f32
        };
        let end_ms = self.start_ms + audio.len() as u64 / 16;
        self.utterance = Vec::with_capacity(16 * self.config.max_utterance_ms as usize);
        if (audio.len() as u32 / 16) < self.config.min_utterance_ms {
            return None;
        }
        Some(SegmentEvent::Final {
            audio,
            start_ms: self.start_ms,
            end_ms,
            mean_voice_probability: mean,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(segmenter: &mut Segmenter, probabilities: &[f32]) -> Vec<SegmentEvent> {
        let frame = vec![1000.0f32; 480];
        probabilities
            .iter()
            .filter_map(|&p| segmenter.push(&frame, p))
            .collect()
    }

    #[test]
    fn one_utterance_gives_interims_then_one_final() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        let mut probs = vec![0.0; 50];
        probs.extend(vec![0.95; 250]); // 2.5 s of speech
        probs.extend(vec![0.05; 100]); // 1 s of silence
        let events = run(&mut s, &probs);
        let interims = events
            .iter()
            .filter(|e| matches!(e, SegmentEvent::Interim { .. }))
            .count();
        assert_eq!(interims, 2, "one per second of speech");
        let Some(SegmentEvent::Final {
            start_ms,
            end_ms,
            mean_voice_probability,
            audio,
        }) = events.last()
        else {
            panic!("{events:?}")
        };
        assert!(
            (*start_ms as i64 - 200).abs() <= 40,
            "start {start_ms} (speech at 500 ms, 300 ms pre-roll)"
        );
        assert!(*end_ms > 2900 && *end_ms < 3400, "end {end_ms}");
        assert!(*mean_voice_probability > 0.5);
        assert_eq!(audio.len() as u64, (end_ms - start_ms) * 16);
        assert!(!s.speaking());
    }

    #[test]
    fn an_utterance_closed_early_leaves_its_tail_as_the_next_ones_pre_roll() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        let (speech, pause, onset) = (
            vec![1000.0f32; 480],
            vec![0.0f32; 480],
            vec![3000.0f32; 480],
        );
        for _ in 0..100 {
            s.push(&speech, 0.95);
        }
        for _ in 0..15 {
            s.push(&pause, 0.05);
        }
        // The next word begins softly, still below the threshold, counted as silence...
        for _ in 0..10 {
            s.push(&onset, 0.05);
        }
        // ...when the utterance is closed at 250 ms of silence (a sentence end whisper is sure
        // of): the onset belongs to the next one.
        assert!(matches!(s.finish(), Some(SegmentEvent::Final { .. })));
        let mut events = Vec::new();
        for _ in 0..100 {
            events.extend(s.push(&onset, 0.95));
        }
        for _ in 0..60 {
            events.extend(s.push(&pause, 0.05));
        }
        let Some(SegmentEvent::Final {
            audio, start_ms, ..
        }) = events.into_iter().last()
        else {
            panic!("a second final");
        };
        assert!(
            start_ms <= 1_150,
            "starts before the soft onset: {start_ms}"
        );
        let onset_at = (1_150 - start_ms as usize + 20) * 16;
        assert!(
            audio[onset_at..onset_at + 160]
                .iter()
                .all(|&v| (v - 3000.0 / 32768.0).abs() < 0.01),
            "the soft onset is in it: {:?}",
            &audio[onset_at..onset_at + 8]
        );
    }

    #[test]
    fn a_speculative_final_is_the_final_when_silence_holds() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        let mut probs = vec![0.95; 150];
        probs.extend(vec![0.05; 100]);
        let events: Vec<_> = run(&mut s, &probs)
            .into_iter()
            .filter(|e| !matches!(e, SegmentEvent::Interim { .. }))
            .collect();
        let [
            SegmentEvent::Speculative { audio: early },
            SegmentEvent::Final { audio, .. },
        ] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(early.len(), audio.len());
    }

    #[test]
    fn speech_after_a_speculation_resumes_the_utterance() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        let mut probs = vec![0.95; 100];
        probs.extend(vec![0.05; 30]); // a 300 ms pause: speculation, then speech again
        probs.extend(vec![0.95; 100]);
        probs.extend(vec![0.05; 100]);
        let kinds: Vec<&str> = run(&mut s, &probs)
            .iter()
            .map(|e| match e {
                SegmentEvent::Interim { .. } => "interim",
                SegmentEvent::Speculative { .. } => "speculative",
                SegmentEvent::Resumed => "resumed",
                SegmentEvent::Final { .. } => "final",
            })
            .filter(|k| *k != "interim")
            .collect();
        assert_eq!(kinds, ["speculative", "resumed", "speculative", "final"]);
    }

    #[test]
    fn interims_follow_the_gap_the_caller_sets() {
        let mut s = Segmenter::new(SegmenterConfig {
            interim_every_ms: 500,
            ..Default::default()
        });
        s.set_interim_gap(1500);
        let interims = run(&mut s, &[0.95; 400])
            .iter()
            .filter(|e| matches!(e, SegmentEvent::Interim { .. }))
            .count();
        // At 0.5 s and 1.0 s, then every 1.5 s: 2.5 s (4.0 s is just past the end).
        assert_eq!(interims, 3);
        s.set_interim_gap(10); // never below the configured cadence
        assert_eq!(s.interim_gap_ms, 500);
    }

    #[test]
    fn silence_and_blips_give_nothing() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        let mut probs = vec![0.1; 300];
        probs.extend([0.9, 0.9, 0.1, 0.9, 0.1]); // never three in a row
        assert!(run(&mut s, &probs).is_empty());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum() {
        let mut s = Segmenter::new(SegmenterConfig {
            max_utterance_ms: 3000,
            ..Default::default()
        });
        let events = run(&mut s, &vec![0.9; 700]);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, SegmentEvent::Final { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn finish_flushes_a_partial_utterance() {
        let mut s = Segmenter::new(SegmenterConfig::default());
        run(&mut s, &[0.9; 80]);
        assert!(matches!(s.finish(), Some(SegmentEvent::Final { .. })));
        assert_eq!(s.finish(), None);
    }
}
