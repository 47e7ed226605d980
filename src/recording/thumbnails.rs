//! A recording's poster and timeline thumbnails, taken live from the composite picture: the
//! recording graph's `thumbs` branch hands over one small I420 frame every few seconds (a
//! leaky queue, so it never holds the encoder back), kept here as RGB. At the end they become
//! one sprite sheet (JPEG), a WebVTT track pointing into it (`#xywh=`), as players such as
//! hls.js and video.js read thumbnails, and a poster: the most detailed frame.

use std::sync::Mutex;

use image::{ImageEncoder, RgbImage};

/// Where a recording's poster, sprite and thumbnail track are stored, beside its file
/// (`room/rec-1.mp4` -> `room/rec-1-poster.jpg`, `-thumbs.jpg`, `-thumbs.vtt`).
pub fn keys(key: &str) -> [String; 3] {
    let stem = key.strip_suffix(".mp4").unwrap_or(key);
    [
        format!("{stem}-poster.jpg"),
        format!("{stem}-thumbs.jpg"),
        format!("{stem}-thumbs.vtt"),
    ]
}

/// The sprite's name as the track refers to it (the file name, beside the track).
pub fn sprite_name(key: &str) -> String {
    let [_, sprite, _] = keys(key);
    sprite.rsplit('/').next().unwrap_or(&sprite).to_string()
}

/// Thumbnails kept per recording (10 s apart: more than five hours); later frames are dropped.
pub const MAX_THUMBNAILS: usize = 2_000;
/// Columns of the sprite sheet.
const COLUMNS: u32 = 10;
const JPEG_QUALITY: u8 = 80;

/// One frame of the timeline.
#[derive(Debug, Clone)]
struct Thumb {
    at_ms: u64,
    rgb: Vec<u8>,
}

/// Frames as they come from the graph.
#[derive(Debug)]
pub struct Thumbnails {
    width: u32,
    height: u32,
    frames: Mutex<Vec<Thumb>>,
}

/// What is stored beside the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub poster_jpeg: Vec<u8>,
    pub sprite_jpeg: Vec<u8>,
    /// Cues name the sprite as `sprite_name#xywh=x,y,w,h`.
    pub vtt: String,
    pub count: usize,
}

impl Thumbnails {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width: width.max(2) & !1,
            height: height.max(2) & !1,
            frames: Mutex::new(Vec::new()),
        }
    }

    /// A frame at `at_ms` into the recording: I420 of the size given at creation (anything
    /// else is ignored: the graph's caps fix it).
    pub fn push_i420(&self, at_ms: u64, data: &[u8]) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (luma, chroma) = (w * h, (w / 2) * (h / 2));
        if data.len() < luma + 2 * chroma {
            return;
        }
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if frames.len() >= MAX_THUMBNAILS {
            return;
        }
        let (y, rest) = data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        let mut rgb = Vec::with_capacity(luma * 3);
        for row in 0..h {
            for col in 0..w {
                let c = (row / 2) * (w / 2) + col / 2;
                rgb.extend(bt601_to_rgb(y[row * w + col], u[c], v[c]));
            }
        }
        frames.push(Thumb { at_ms, rgb });
    }

    pub fn len(&self) -> usize {
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sprite, its WebVTT track (cues up to `duration_ms`) and the poster; `None` without
    /// frames.
    pub fn render(&self, sprite_name: &str, duration_ms: u64) -> Option<Rendered> {
        let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if frames.is_empty() {
            return None;
        }
        let (w, h) = (self.width, self.height);
        let n = frames.len() as u32;
        let (cols, rows) = (n.min(COLUMNS), n.div_ceil(COLUMNS));
        let mut sprite = RgbImage::new(cols * w, rows * h);
        let mut vtt = String::from("WEBVTT\n");
        for (i, thumb) in frames.iter().enumerate() {
            let (x, y) = ((i as u32 % COLUMNS) * w, (i as u32 / COLUMNS) * h);
            let tile = RgbImage::from_raw(w, h, thumb.rgb.clone())?;
            image::imageops::replace(&mut sprite, &tile, x.into(), y.into());
            let end = frames
                .get(i + 1)
                .map_or(duration_ms.max(thumb.at_ms + 1), |next| next.at_ms);
            vtt.push_str(&format!(
                "\n{} --> {}\n{sprite_name}#xywh={x},{y},{w},{h}\n",
                timestamp(thumb.at_ms),
                timestamp(end.max(thumb.at_ms + 1))
            ));
        }
        // The poster: the frame with the most detail (a meeting's first seconds are often
        // black, a camera still starting).
        let poster = frames
            .iter()
            .max_by(|a, b| detail(&a.rgb).total_cmp(&detail(&b.rgb)))?;
        Some(Rendered {
            poster_jpeg: jpeg(&poster.rgb, w, h)?,
            sprite_jpeg: jpeg(sprite.as_raw(), sprite.width(), sprite.height())?,
            vtt,
            count: frames.len(),
        })
    }
}

/// Variance of the luma: how much there is to see.
fn detail(rgb: &[u8]) -> f64 {
    let n = (rgb.len() / 3).max(1) as f64;
    let luma: Vec<f64> = rgb
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = luma.iter().sum::<f64>() / n;
    luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n
}

fn jpeg(rgb: &[u8], width: u32, height: u32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .ok()?;
    Some(out)
}

/// BT.601, limited range (what the compositor's I420 is).
fn bt601_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (f32::from(y) - 16.0) * 1.164;
    let d = f32::from(u) - 128.0;
    let e = f32::from(v) - 128.0;
    let clamp = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        clamp(c + 1.596 * e),
        clamp(c - 0.392 * d - 0.813 * e),
        clamp(c + 2.017 * d),
    ]
}

/// `HH:MM:SS.mmm`, as WebVTT writes times.
fn timestamp(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat I420 frame of one colour (limited range).
    fn flat(w: usize, h: usize, y: u8, u: u8, v: u8) -> Vec<u8> {
        let mut f = vec![y; w * h];
        f.extend(vec![u; (w / 2) * (h / 2)]);
        f.extend(vec![v; (w / 2) * (h / 2)]);
        f
    }

    #[test]
    fn frames_become_a_sprite_a_track_and_the_most_detailed_poster() {
        let t = Thumbnails::new(32, 18);
        for i in 0..12u64 {
            t.push_i420(i * 10_000, &flat(32, 18, 16, 128, 128)); // black
        }
        // One detailed frame: half white.
        let mut detailed = flat(32, 18, 16, 128, 128);
        for row in 0..18 {
            for col in 16..32 {
                detailed[row * 32 + col] = 235;
            }
        }
        t.push_i420(120_000, &detailed);
        t.push_i420(130_000, &[0; 10]); // the wrong size: ignored
        assert_eq!(t.len(), 13);
        let r = t.render("rec-1-thumbs.jpg", 125_000).unwrap();
        assert_eq!(r.count, 13);
        let sprite = image::load_from_memory(&r.sprite_jpeg).unwrap();
        assert_eq!((sprite.width(), sprite.height()), (320, 36));
        let poster = image::load_from_memory(&r.poster_jpeg).unwrap().to_rgb8();
        assert_eq!((poster.width(), poster.height()), (32, 18));
        assert!(poster.get_pixel(28, 9)[0] > 200 && poster.get_pixel(3, 9)[0] < 40);
        assert!(r.vtt.starts_with(
            "WEBVTT\n\n00:00:00.000 --> 00:00:10.000\nrec-1-thumbs.jpg#xywh=0,0,32,18\n"
        ));
        assert!(
            r.vtt
                .contains("\n00:01:30.000 --> 00:01:40.000\nrec-1-thumbs.jpg#xywh=288,0,32,18\n")
        );
        assert!(
            r.vtt
                .ends_with("\n00:02:00.000 --> 00:02:05.000\nrec-1-thumbs.jpg#xywh=64,18,32,18\n"),
            "{}",
            r.vtt
        );
        assert_eq!(r.vtt.matches(" --> ").count(), 13);
    }

    #[test]
    fn nothing_without_frames_and_bounded_with_many() {
        let t = Thumbnails::new(4, 2);
        assert!(t.render("x.jpg", 1000).is_none());
        for i in 0..(MAX_THUMBNAILS as u64 + 10) {
            t.push_i420(i, &flat(4, 2, 100, 128, 128));
        }
        assert_eq!(t.len(), MAX_THUMBNAILS);
    }

    #[test]
    fn derivatives_sit_beside_the_recording() {
        assert_eq!(
            keys("room/rec-1.mp4"),
            [
                "room/rec-1-poster.jpg",
                "room/rec-1-thumbs.jpg",
                "room/rec-1-thumbs.vtt"
            ]
        );
        assert_eq!(sprite_name("room/rec-1.mp4"), "rec-1-thumbs.jpg");
    }

    #[test]
    fn colours_convert_as_bt601() {
        assert_eq!(bt601_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(bt601_to_rgb(235, 128, 128), [255, 255, 255]);
        let red = bt601_to_rgb(81, 90, 240);
        assert!(red[0] > 240 && red[1] < 20 && red[2] < 20, "{red:?}");
        assert_eq!(timestamp(3_723_004), "01:02:03.004");
    }
}
