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
    pub interim_every_ms: u32,
}

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
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum SegmentEvent {
    /// The utterance so far (16 kHz mono, [-1, 1]).
    Interim { audio: Vec<f32> },
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
}

impl Segmenter {
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            pre_roll: VecDeque::with_capacity(16 * config.pre_roll_ms as usize),
            utterance: Vec::with_capacity(16 * config.max_utterance_ms as usize),
            config,
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
        }
    }

    pub fn speaking(&self) -> bool {
        self.speaking
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
                ) = (0, 0, 0.0, 0);
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
        if self.silence_ms >= self.config.end_silence_ms
            || length_ms >= self.config.max_utterance_ms
        {
            return self.finish();
        }
        if self.since_interim_ms >= self.config.interim_every_ms {
            self.since_interim_ms = 0;
            return Some(SegmentEvent::Interim {
                audio: self.utterance.clone(),
            });
        }
        None
    }

    /// Ends the utterance in progress (the speaker left or the track ended).
    pub fn finish(&mut self) -> Option<SegmentEvent> {
        if !self.speaking {
            return None;
        }
        self.speaking = false;
        self.speech_run = 0;
        // Trailing silence is not part of the utterance.
        let trailing = (16 * self.silence_ms as usize).min(self.utterance.len());
        let mut audio = std::mem::take(&mut self.utterance);
        audio.truncate(audio.len() - trailing.saturating_sub(16 * 200));
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
