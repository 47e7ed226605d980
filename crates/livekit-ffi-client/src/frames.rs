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
        let frame = Self {
            width,
            height,
            data,
            timestamp_us,
        };
        frame.check()?;
        Ok(frame)
    }

    /// An I420 frame from packed RGB (`width * height * 3` bytes), BT.601 limited range as
    /// WebRTC uses; chroma is the average of each 2x2 block.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Self, FrameSizeError> {
        let (w, h) = (width as usize, height as usize);
        if rgb.len() != w * h * 3 {
            return Err(FrameSizeError::WrongLength {
                width,
                height,
                expected: w * h * 3,
                actual: rgb.len(),
            });
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut data = vec![0u8; Self::i420_len(width, height)];
        let (y_plane, chroma) = data.split_at_mut(w * h);
        let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
        let px = |x: usize, y: usize| {
            let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
            (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32)
        };
        for y in 0..h {
            for x in 0..w {
                let (r, g, b) = px(x, y);
                y_plane[y * w + x] =
                    (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round() as u8;
            }
        }
        for cy in 0..ch {
            for cx in 0..cw {
                let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = px(2 * cx + dx, 2 * cy + dy);
                    (r, g, b) = (r + p.0 / 4.0, g + p.1 / 4.0, b + p.2 / 4.0);
                }
                u_plane[cy * cw + cx] =
                    (128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0).round() as u8;
                v_plane[cy * cw + cx] =
                    (128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0).round() as u8;
            }
        }
        Self::from_i420(width, height, data, 0)
    }

    /// Checks the dimensions and the data's length (the fields are public).
    pub fn check(&self) -> Result<(), FrameSizeError> {
        let (width, height) = (self.width, self.height);
        if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
            return Err(FrameSizeError::BadDimensions { width, height });
        }
        let expected = Self::i420_len(width, height);
        if self.data.len() != expected {
            return Err(FrameSizeError::WrongLength {
                width,
                height,
                expected,
                actual: self.data.len(),
            });
        }
        Ok(())
    }

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
