//! From the model's person probabilities to a full-size alpha: smoothed over time against
//! flicker, upsampled bilinearly, and feathered (a smooth ramp instead of a hard threshold), for
//! the luma plane and, averaged 2x2, for the chroma planes. Buffers are kept between frames.

/// Weight of the newest mask in the running average: lower is steadier, higher follows motion.
const NEWEST: f32 = 0.6;
/// Probabilities below `LOW` are background, above `HIGH` person, smooth in between.
const LOW: f32 = 0.3;
const HIGH: f32 = 0.7;

#[derive(Default)]
pub struct MaskRefiner {
    smoothed: Vec<f32>,
    size: (usize, usize),
    /// Alpha per luma pixel, 0 (background) ..= 255 (person).
    pub luma: Vec<u8>,
    /// Alpha per chroma pixel.
    pub chroma: Vec<u8>,
    /// Per output column: the two mask columns it falls between and the weight of the second.
    columns: Vec<(usize, usize, f32)>,
}

#[inline]
fn feather(p: f32) -> u8 {
    let t = ((p - LOW) / (HIGH - LOW)).clamp(0.0, 1.0);
    (t * t * (3.0 - 2.0 * t) * 255.0 + 0.5) as u8
}

impl MaskRefiner {
    /// Forgets the previous masks (a new stream, or a size change).
    pub fn reset(&mut self) {
        self.smoothed.clear();
    }

    /// Refines `mask` (`mw` x `mh`) into alphas for a `width` x `height` frame.
    pub fn refine(&mut self, mask: &[f32], mw: usize, mh: usize, width: usize, height: usize) {
        if self.size != (mw, mh) || self.smoothed.len() != mask.len() {
            self.size = (mw, mh);
            self.smoothed.clear();
            self.smoothed.extend_from_slice(mask);
        } else {
            for (s, &m) in self.smoothed.iter_mut().zip(mask) {
                *s += NEWEST * (m - *s);
            }
        }
        self.luma.resize(width * height, 0);
        // Bilinear, sampling at pixel centres.
        let (sx, sy) = (mw as f32 / width as f32, mh as f32 / height as f32);
        self.columns.clear();
        self.columns.extend((0..width).map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (mw - 1) as f32);
            let x0 = fx as usize;
            (x0, (x0 + 1).min(mw - 1), fx - x0 as f32)
        }));
        for y in 0..height {
            let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (mh - 1) as f32);
            let y0 = fy as usize;
            let (y1, wy) = ((y0 + 1).min(mh - 1), fy - y0 as f32);
            let (r0, r1) = (
                &self.smoothed[y0 * mw..(y0 + 1) * mw],
                &self.smoothed[y1 * mw..(y1 + 1) * mw],
            );
            let out = &mut self.luma[y * width..(y + 1) * width];
            for (o, &(x0, x1, wx)) in out.iter_mut().zip(&self.columns) {
                let top = r0[x0] + wx * (r0[x1] - r0[x0]);
                let bottom = r1[x0] + wx * (r1[x1] - r1[x0]);
                *o = feather(top + wy * (bottom - top));
            }
        }
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        self.chroma.resize(cw * ch, 0);
        for cy in 0..ch {
            let (y0, y1) = (2 * cy, (2 * cy + 1).min(height - 1));
            for cx in 0..cw {
                let (x0, x1) = (2 * cx, (2 * cx + 1).min(width - 1));
                let sum = self.luma[y0 * width + x0] as u16
                    + self.luma[y0 * width + x1] as u16
                    + self.luma[y1 * width + x0] as u16
                    + self.luma[y1 * width + x1] as u16;
                self.chroma[cy * cw + cx] = ((sum + 2) / 4) as u8;
            }
        }
    }

    /// Share of the frame's pixels that are more background than person.
    pub fn background_share(&self) -> f64 {
        self.luma.iter().filter(|&&a| a < 128).count() as f64 / self.luma.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feathered_upsampled_and_steadied() {
        let mut r = MaskRefiner::default();
        // Left half person, right half background.
        let mask: Vec<f32> = (0..4 * 4)
            .map(|i| if i % 4 < 2 { 1.0 } else { 0.0 })
            .collect();
        r.refine(&mask, 4, 4, 16, 8);
        assert_eq!(r.luma.len(), 16 * 8);
        assert_eq!(r.chroma.len(), 8 * 4);
        assert_eq!(r.luma[0], 255);
        assert_eq!(r.luma[15], 0);
        assert!(
            r.luma[7] > 0 && r.luma[7] < 255 || r.luma[8] > 0 && r.luma[8] < 255,
            "a soft edge: {:?}",
            &r.luma[..16]
        );
        assert!((r.background_share() - 0.5).abs() < 0.1);
        // A one-frame flash of "person" everywhere is damped, not copied.
        r.refine(&[1.0; 16], 4, 4, 16, 8);
        assert!(r.luma[15] < 255, "{}", r.luma[15]);
        // A size change starts afresh.
        r.refine(&[0.0; 4], 2, 2, 4, 4);
        assert!(r.luma.iter().all(|&a| a == 0));
    }
}
