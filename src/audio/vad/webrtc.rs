//! WebRTC's GMM voice activity detector (libfvad through the `webrtc-vad` crate): a yes/no per
//! 10 ms frame, read at 48 kHz directly.

use webrtc_vad::{SampleRate, Vad, VadMode};

use super::{VadError, VoiceDetector};
use crate::audio::denoise::FRAME;

pub struct WebRtcVad {
    vad: Vad,
    samples: Vec<i16>,
}

impl WebRtcVad {
    /// `aggressiveness` 0 (quality) ..= 3 (very aggressive).
    pub fn new(aggressiveness: u8) -> Self {
        let mode = match aggressiveness {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            _ => VadMode::VeryAggressive,
        };
        Self {
            vad: Vad::new_with_rate_and_mode(SampleRate::Rate48kHz, mode),
            samples: Vec::with_capacity(FRAME),
        }
    }
}

impl VoiceDetector for WebRtcVad {
    fn name(&self) -> &'static str {
        "webrtc"
    }

    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, VadError> {
        self.samples.clear();
        self.samples
            .extend(frame.iter().map(|&s| s.clamp(-32768.0, 32767.0) as i16));
        match self.vad.is_voice_segment(&self.samples) {
            Ok(voice) => Ok(if voice { 1.0 } else { 0.0 }),
            Err(()) => Err(VadError::Inference("libfvad rejected the frame".into())),
        }
    }
}
