//! The person over a new background, in YUV (no RGB round trip): each plane is
//! `alpha * camera + (1 - alpha) * background`. The blurred background is made at a quarter of
//! the resolution (area average, then two separable box blurs, close to a Gaussian) and
//! upsampled bilinearly as it is blended. Buffers are kept between frames.

use crate::media::VideoFrame;

/// Background resolution divisor for blurring.
const SCALE: usize = 4;

/// One plane at reduced size.
#[derive(Default)]
struct Small {
    w: usize,
    h: usize,
    data: Vec<u8>,
    scratch: Vec<u8>,
}

impl Small {
    fn downscale(&mut self, src: &[u8], w: usize, h: usize) {
        self.w = w.div_ceil(SCALE);
        self.h = h.div_ceil(SCALE);
        self.data.resize(self.w * self.h, 0);
        for sy in 0..self.h {
            let (y0, y1) = (sy * SCALE, ((sy + 1) * SCALE).min(h));
            for sx in 0..self.w {
                let (x0, x1) = (sx * SCALE, ((sx + 1) * SCALE).min(w));
                let mut sum = 0u32;
                for y in y0..y1 {
                    sum += src[y * w + x0..y * w + x1]
                        .iter()
                        .map(|&v| v as u32)
                        .sum::<u32>();
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                self.data[sy * self.w + sx] = ((sum + n / 2) / n) as u8;
            }
        }
    }

    /// A box blur of `radius` along rows, then along columns.
    fn box_blur(&mut self, radius: usize) {
        if radius == 0 {
            return;
        }
        let (w, h) = (self.w, self.h);
        self.scratch.resize(w * h, 0);
        let blur_line = |get: &dyn Fn(usize) -> u8, len: usize, put: &mut dyn FnMut(usize, u8)| {
            let r = radius as isize;
            let at = |i: isize| get(i.clamp(0, len as isize - 1) as usize) as u32;
            let mut sum: u32 = (-r..=r).map(at).sum();
            let n = (2 * radius + 1) as u32;
            for i in 0..len as isize {
                put(i as usize, ((sum + n / 2) / n) as u8);
                sum += at(i + r + 1);
                sum -= at(i - r);
            }
        };
        for y in 0..h {
            let row = &self.data[y * w..(y + 1) * w];
            let out = &mut self.scratch[y * w..(y + 1) * w];
            blur_line(&|i| row[i], w, &mut |i, v| out[i] = v);
        }
        for x in 0..w {
            let src = &self.scratch;
            let dst = &mut self.data;
            blur_line(&|i| src[i * w + x], h, &mut |i, v| dst[i * w + x] = v);
        }
    }
}

/// Blends `dst = a * dst + (1 - a) * bg(x, y)` for one plane, with the background upsampled
/// bilinearly from `small`; `fx` is scratch for the per-column weights.
fn blend_over_small(
    dst: &mut [u8],
    w: usize,
    h: usize,
    alpha: &[u8],
    small: &Small,
    fx: &mut Vec<(usize, usize, u32)>,
) {
    let (sw, sh) = (small.w, small.h);
    fx.clear();
    fx.extend((0..w).map(|x| {
        let f = ((x as f32 + 0.5) / SCALE as f32 - 0.5).clamp(0.0, (sw - 1) as f32);
        let x0 = f as usize;
        (x0, (x0 + 1).min(sw - 1), ((f - x0 as f32) * 256.0) as u32)
    }));
    for y in 0..h {
        let f = ((y as f32 + 0.5) / SCALE as f32 - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = f as usize;
        let (y1, wy) = ((y0 + 1).min(sh - 1), ((f - y0 as f32) * 256.0) as u32);
        let (r0, r1) = (
            &small.data[y0 * sw..(y0 + 1) * sw],
            &small.data[y1 * sw..(y1 + 1) * sw],
        );
        let row = &mut dst[y * w..(y + 1) * w];
        let arow = &alpha[y * w..(y + 1) * w];
        for ((d, &a), &(x0, x1, wx)) in row.iter_mut().zip(arow).zip(fx.iter()) {
            if a == 255 {
                continue;
            }
            let top = r0[x0] as u32 * (256 - wx) + r0[x1] as u32 * wx;
            let bottom = r1[x0] as u32 * (256 - wx) + r1[x1] as u32 * wx;
            let bg = (top * (256 - wy) + bottom * wy + (1 << 15)) >> 16;
            let a = a as u32;
            *d = ((*d as u32 * a + bg * (255 - a) + 127) / 255) as u8;
        }
    }
}

fn blend_over(dst: &mut [u8], alpha: &[u8], bg: &[u8]) {
    for ((d, &a), &b) in dst.iter_mut().zip(alpha).zip(bg) {
        let a = a as u32;
        *d = ((*d as u32 * a + b as u32 * (255 - a) + 127) / 255) as u8;
    }
}

#[derive(Default)]
pub struct Compositor {
    planes: [Small; 3],
    columns: Vec<(usize, usize, u32)>,
}

impl Compositor {
    /// Blurs what is not the person, in place. `strength` 1..=10 (box radius at quarter size).
    pub fn blur(
        &mut self,
        frame: &mut VideoFrame,
        luma_alpha: &[u8],
        chroma_alpha: &[u8],
        strength: u8,
    ) {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let radius = strength.clamp(1, 10) as usize;
        let (y, u, v) = frame.planes_mut();
        for (plane, (data, pw, ph, alpha)) in self.planes.iter_mut().zip([
            (&mut *y, w, h, luma_alpha),
            (&mut *u, cw, ch, chroma_alpha),
            (&mut *v, cw, ch, chroma_alpha),
        ]) {
            plane.downscale(data, pw, ph);
            // Chroma planes are half size: half the radius blurs the same area.
            plane.box_blur(if pw == w { radius } else { radius.div_ceil(2) });
            plane.box_blur(if pw == w { radius } else { radius.div_ceil(2) });
            blend_over_small(data, pw, ph, alpha, plane, &mut self.columns);
        }
    }

    /// Puts `background` (an I420 frame of the same size) behind the person, in place.
    pub fn replace(
        frame: &mut VideoFrame,
        luma_alpha: &[u8],
        chroma_alpha: &[u8],
        background: &VideoFrame,
    ) {
        let (by, bu, bv) = background.planes();
        let (y, u, v) = frame.planes_mut();
        blend_over(y, luma_alpha, by);
        blend_over(u, chroma_alpha, bu);
        blend_over(v, chroma_alpha, bv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, f: impl Fn(usize, usize) -> u8) -> VideoFrame {
        let mut data = vec![128u8; VideoFrame::i420_len(w, h)];
        for y in 0..h as usize {
            for x in 0..w as usize {
                data[y * w as usize + x] = f(x, y);
            }
        }
        VideoFrame::from_i420(w, h, data, 0).unwrap()
    }

    #[test]
    fn the_person_is_kept_and_the_background_blurred() {
        // A checkerboard: blurring flattens it towards grey.
        let checker = |x: usize, y: usize| {
            if (x / 2 + y / 2).is_multiple_of(2) {
                16
            } else {
                235
            }
        };
        let mut f = frame(64, 32, checker);
        let original = f.clone();
        // Person on the left half.
        let luma: Vec<u8> = (0..64 * 32)
            .map(|i| if i % 64 < 32 { 255 } else { 0 })
            .collect();
        let chroma: Vec<u8> = (0..32 * 16)
            .map(|i| if i % 32 < 16 { 255 } else { 0 })
            .collect();
        Compositor::default().blur(&mut f, &luma, &chroma, 4);
        let (y, _, _) = f.planes();
        let (oy, _, _) = original.planes();
        for row in 0..32 {
            assert_eq!(
                &y[row * 64..row * 64 + 32],
                &oy[row * 64..row * 64 + 32],
                "person untouched"
            );
        }
        let spread = |p: &[u8]| {
            let right: Vec<u8> = (0..32)
                .flat_map(|r| p[r * 64 + 40..r * 64 + 64].to_vec())
                .collect();
            *right.iter().max().unwrap() as i32 - *right.iter().min().unwrap() as i32
        };
        assert!(
            spread(y) < spread(oy) / 4,
            "background flattened: {} vs {}",
            spread(y),
            spread(oy)
        );
    }

    #[test]
    fn a_replaced_background_shows_where_there_is_no_person() {
        let mut f = frame(8, 8, |_, _| 200);
        let bg = frame(8, 8, |_, _| 50);
        let luma: Vec<u8> = (0..64).map(|i| if i < 32 { 255 } else { 0 }).collect();
        let chroma = vec![255u8; 16];
        Compositor::replace(&mut f, &luma, &chroma, &bg);
        let (y, _, _) = f.planes();
        assert!(y[..32].iter().all(|&v| v == 200) && y[32..].iter().all(|&v| v == 50));
    }
}
