//! PCM audio frames and planar I420 video frames.

use thiserror::Error;

/// Interleaved signed 16-bit PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
    pub channels: u32,
    /// Capture time of the first sample, microseconds on the receiver's monotonic clock.
    pub timestamp_us: i64,
}

impl AudioFrame {
    pub fn samples_per_channel(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }

    /// A 48 kHz mono frame from samples in i16 scale (rounded, saturating).
    pub fn mono_48k(samples: &[f32]) -> Self {
        Self {
            samples: samples.iter().map(|&s| s.round() as i16).collect(),
            sample_rate: 48_000,
            channels: 1,
            timestamp_us: 0,
        }
    }

    pub fn duration_us(&self) -> i64 {
        self.samples_per_channel() as i64 * 1_000_000 / self.sample_rate.max(1) as i64
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum FrameSizeError {
    #[error("I420 frame {width}x{height} needs {expected} bytes, got {actual}")]
    WrongLength {
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("frame dimensions {width}x{height} are invalid")]
    BadDimensions { width: u32, height: u32 },
}

/// A tightly packed I420 frame: Y plane (`width` stride), then U and V planes
/// (`chroma_width` stride), no padding.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    pub timestamp_us: i64,
}

impl VideoFrame {
    pub fn chroma_width(width: u32) -> u32 {
        width.div_ceil(2)
    }

    pub fn chroma_height(height: u32) -> u32 {
        height.div_ceil(2)
    }

    /// Bytes of a packed I420 frame of this size.
    pub fn i420_len(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (
            Self::chroma_width(width) as usize,
            Self::chroma_height(height) as usize,
        );
        w * h + 2 * cw * ch
    }

    /// Wraps packed I420 bytes, checking the length against the dimensions.
    pub fn from_i420(
        width: u32,
        height: u32,
        data: Vec<u8>,
        timestamp_us: i64,
    ) -> Result<Self, FrameSizeError> {
        if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
            return Err(FrameSizeError::BadDimensions { width, height });
        }
        let expected = Self::i420_len(width, height);
        if data.len() != expected {
            return Err(FrameSizeError::WrongLength {
                width,
                height,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            width,
            height,
            data,
            timestamp_us,
        })
    }

    /// (Y, U, V) planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y_len = (self.width * self.height) as usize;
        let c_len = (Self::chroma_width(self.width) * Self::chroma_height(self.height)) as usize;
        let (y, rest) = self.data.split_at(y_len);
        let (u, v) = rest.split_at(c_len);
        (y, u, &v[..c_len])
    }

    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let y_len = (self.width * self.height) as usize;
        let c_len = (Self::chroma_width(self.width) * Self::chroma_height(self.height)) as usize;
        let (y, rest) = self.data.split_at_mut(y_len);
        let (u, v) = rest.split_at_mut(c_len);
        (y, u, &mut v[..c_len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i420_length_is_checked() {
        assert_eq!(VideoFrame::i420_len(640, 360), 640 * 360 * 3 / 2);
        assert_eq!(VideoFrame::i420_len(3, 3), 9 + 2 * 4);
        let err = VideoFrame::from_i420(640, 360, vec![0; 10], 0).unwrap_err();
        assert!(matches!(
            err,
            FrameSizeError::WrongLength {
                expected: 345_600,
                actual: 10,
                ..
            }
        ));
        assert!(VideoFrame::from_i420(0, 360, vec![], 0).is_err());
        let frame = VideoFrame::from_i420(4, 2, (0..12).collect(), 0).unwrap();
        let (y, u, v) = frame.planes();
        assert_eq!((y.len(), u, v), (8, &[8u8, 9][..], &[10u8, 11][..]));
    }

    #[test]
    fn audio_duration() {
        let f = AudioFrame {
            samples: vec![0; 960],
            sample_rate: 48_000,
            channels: 2,
            timestamp_us: 0,
        };
        assert_eq!(f.samples_per_channel(), 480);
        assert_eq!(f.duration_us(), 10_000);
    }
}
