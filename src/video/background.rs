//! Background images for `image` mode, from a checked source (`background_source`): at most
//! `MAX_BYTES`, PNG or JPEG by content, at most `MAX_SIDE` pixels a side and `MAX_ASPECT`:1,
//! decoded with the `image` crate under an allocation limit, at most `MAX_CONCURRENT_DECODES`
//! at a time in the process; then cropped to the frame's aspect in source coordinates and
//! resized to exactly the frame, as I420, so no intermediate is larger than the source or the
//! frame.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use thiserror::Error;

use super::background_source::{self, BackgroundSource};
use crate::media::VideoFrame;

pub const MAX_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_SIDE: u32 = 4096;
/// The most one side may exceed the other: a 4096x1 strip is no background.
pub const MAX_ASPECT: u32 = 4;
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Decodes running at once in the whole process, whatever the rooms ask for: a decode of the
/// largest image allowed holds ~50 MB for a moment.
pub const MAX_CONCURRENT_DECODES: usize = 1;
/// Decoded uploads kept for reuse (uploads are content-addressed, so never stale): cameras
/// switching back and forth, or a room sharing one background, decode it once.
pub const DECODED_UPLOADS_KEPT: usize = 4;
/// A decoded background is kept at most this many pixels a side (a camera holds it for as
/// long as it is used; frames are at most 1080p in practice).
pub const MAX_KEPT_SIDE: u32 = 1920;

static DECODES: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_DECODES));

/// The most recently used decoded uploads, newest last.
static DECODED_UPLOADS: Mutex<VecDeque<(PathBuf, Arc<RgbImage>)>> = Mutex::new(VecDeque::new());

fn decoded_upload(path: &Path) -> Option<Arc<RgbImage>> {
    let mut kept = DECODED_UPLOADS.lock().unwrap_or_else(|e| e.into_inner());
    let i = kept.iter().position(|(p, _)| p == path)?;
    let entry = kept.remove(i)?;
    let image = entry.1.clone();
    kept.push_back(entry);
    Some(image)
}

fn keep_decoded_upload(path: &Path, image: Arc<RgbImage>) {
    let mut kept = DECODED_UPLOADS.lock().unwrap_or_else(|e| e.into_inner());
    kept.retain(|(p, _)| p != path);
    if kept.len() >= DECODED_UPLOADS_KEPT {
        kept.pop_front();
    }
    kept.push_back((path.to_path_buf(), image));
}

#[derive(Debug, Error, PartialEq)]
pub enum BackgroundError {
    #[error("background image is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("background image is not PNG or JPEG")]
    NotAnImage,
    #[error(
        "background image is {width}x{height}; at most {MAX_SIDE} pixels a side and {MAX_ASPECT}:1"
    )]
    Dimensions { width: u32, height: u32 },
    #[error("background image cannot be decoded: {0}")]
    Decode(String),
    #[error("background image could not be fetched: {0}")]
    Fetch(String),
    #[error("background image fetch timed out after {0:?}")]
    Timeout(Duration),
    #[error("background image source refused: {0}")]
    Source(String),
}

/// Checks and decodes image bytes, kept at most `MAX_KEPT_SIDE` a side.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, BackgroundError> {
    decode_full(bytes).map(shrink_to_keep)
}

/// Checks and decodes image bytes at their own size.
fn decode_full(bytes: &[u8]) -> Result<RgbImage, BackgroundError> {
    if bytes.len() > MAX_BYTES {
        return Err(BackgroundError::TooLarge);
    }
    let format = image::guess_format(bytes).map_err(|_| BackgroundError::NotAnImage)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(BackgroundError::NotAnImage);
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| BackgroundError::Decode(e.to_string()))?;
    let (long, short) = (width.max(height), width.min(height));
    if long > MAX_SIDE || short == 0 || long > short.saturating_mul(MAX_ASPECT) {
        return Err(BackgroundError::Dimensions { width, height });
    }
    reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_SIDE as u64 * MAX_SIDE as u64 * 4);
    reader.limits(limits);
    Ok(reader
        .decode()
        .map_err(|e| BackgroundError::Decode(e.to_string()))?
        .into_rgb8())
}

/// `image`, scaled down (keeping its aspect) to at most `MAX_KEPT_SIDE` a side.
fn shrink_to_keep(image: RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if long <= MAX_KEPT_SIDE {
        return image;
    }
    let scale = |side: u32| ((side as u64 * MAX_KEPT_SIDE as u64) / long as u64).max(1) as u32;
    // Integer area averaging straight into the output: `resize` would hold a float copy of
    // the image's columns (about 90 MB for a 4096x4096 picture) on the way.
    image::imageops::thumbnail(&image, scale(w), scale(h))
}

/// Reads or fetches the image a checked `source` names, then decodes it off the async threads
/// (an upload decoded lately is reused).
pub async fn load(source: &BackgroundSource) -> Result<Arc<RgbImage>, BackgroundError> {
    match source {
        BackgroundSource::Upload { path, .. } => {
            if let Some(image) = decoded_upload(path) {
                return Ok(image);
            }
            let bytes = background_source::read_upload(path).await?;
            decode_upload_bounded(path.clone(), bytes).await
        }
        BackgroundSource::Url { url, host, port } => {
            let bytes = background_source::fetch_url(url, host, *port).await?;
            Ok(Arc::new(decode_bounded(bytes).await?))
        }
    }
}

/// Runs `work` on a blocking thread holding one of the process's decode permits until it ends
/// (also when the caller is cancelled meanwhile).
async fn with_decode_permit<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BackgroundError> + Send + 'static,
) -> Result<T, BackgroundError> {
    let permit = DECODES
        .acquire()
        .await
        .map_err(|e| BackgroundError::Decode(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| BackgroundError::Decode(e.to_string()))?
}

/// `decode` under the process's decode limit.
pub async fn decode_bounded(bytes: Vec<u8>) -> Result<RgbImage, BackgroundError> {
    with_decode_permit(move || decode(&bytes)).await
}

/// Checks that `bytes` decode as a background (an upload arriving), under the process's decode
/// limit: the image's own size. Nothing is kept, so nothing is scaled.
pub async fn check_bounded(
    bytes: impl AsRef<[u8]> + Send + 'static,
) -> Result<(u32, u32), BackgroundError> {
    with_decode_permit(move || decode_full(bytes.as_ref()).map(|image| image.dimensions())).await
}

/// `decode_bounded` for an upload, kept for reuse. The decode and its keeping run on the
/// blocking thread, so a load cancelled meanwhile still leaves the result for the next one.
async fn decode_upload_bounded(
    path: PathBuf,
    bytes: Vec<u8>,
) -> Result<Arc<RgbImage>, BackgroundError> {
    with_decode_permit(move || {
        if let Some(image) = decoded_upload(&path) {
            return Ok(image);
        }
        let image = Arc::new(decode(&bytes)?);
        keep_decoded_upload(&path, image.clone());
        Ok(image)
    })
    .await
}

/// `image` cropped (centred) to the aspect of `width` x `height`, then resized to exactly that
/// size, as I420.
pub fn fit(image: &RgbImage, width: u32, height: u32) -> VideoFrame {
    let (iw, ih) = image.dimensions();
    // The largest centred window of the frame's aspect, in source pixels.
    let (cw, ch) = if iw as u64 * height as u64 > ih as u64 * width as u64 {
        (
            ((ih as u64 * width as u64) / height as u64).max(1) as u32,
            ih,
        )
    } else {
        (
            iw,
            ((iw as u64 * height as u64) / width as u64).max(1) as u32,
        )
    };
    let window = image::imageops::crop_imm(image, (iw - cw) / 2, (ih - ch) / 2, cw, ch).to_image();
    let resized = image::imageops::resize(
        &window,
        width,
        height,
        image::imageops::FilterType::Triangle,
    );
    VideoFrame::from_rgb(width, height, resized.as_raw()).expect("sized above")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]))
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn images_are_checked_before_use() {
        assert_eq!(decode(&png(64, 36)).unwrap().dimensions(), (64, 36));
        assert_eq!(
            decode(b"GIF89a not really"),
            Err(BackgroundError::NotAnImage)
        );
        assert_eq!(decode(b"hello"), Err(BackgroundError::NotAnImage));
        assert_eq!(
            decode(&vec![0u8; MAX_BYTES + 1]),
            Err(BackgroundError::TooLarge)
        );
        assert_eq!(
            decode(&png(MAX_SIDE + 1, 2)),
            Err(BackgroundError::Dimensions {
                width: MAX_SIDE + 1,
                height: 2
            })
        );
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            decode(&truncated),
            Err(BackgroundError::Decode(_))
        ));
    }

    #[test]
    fn strips_are_refused_and_fitting_allocates_no_more_than_source_or_frame() {
        for (w, h) in [(4096, 1), (1, 4096), (400, 99)] {
            assert_eq!(
                decode(&png(w, h)),
                Err(BackgroundError::Dimensions {
                    width: w,
                    height: h
                }),
                "{w}x{h}"
            );
        }
        for (w, h) in [(100, 25), (25, 100), (1280, 720), (7, 9)] {
            let image = decode(&png(w, h)).unwrap();
            for (fw, fh) in [(64, 36), (1280, 720), (36, 64), (2, 2)] {
                let frame = fit(&image, fw, fh);
                assert_eq!(
                    (frame.width, frame.height),
                    (fw, fh),
                    "{w}x{h} -> {fw}x{fh}"
                );
                frame.check().unwrap();
            }
        }
    }

    #[tokio::test]
    async fn decodes_are_bounded_and_bombs_refused() {
        // A valid PNG header claiming 4096x4096, mostly zeros: refused or decoded within the limit.
        let bomb = png(4096, 4096);
        assert!(bomb.len() < 400_000, "compresses well: {}", bomb.len());
        let decoded = decode_bounded(bomb).await.unwrap();
        assert_eq!(
            decoded.dimensions(),
            (MAX_KEPT_SIDE, MAX_KEPT_SIDE),
            "kept small"
        );
        let mut claims_more = png(64, 64);
        // IHDR width at bytes 16..20: claim 100000 pixels wide.
        claims_more[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(decode(&claims_more).is_err());
        assert_eq!(DECODES.available_permits(), MAX_CONCURRENT_DECODES);
    }
}
