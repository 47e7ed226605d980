//! Background images for `image` mode: from a local path or an http(s) URL (an S3 key once the
//! recording store exists), checked before use: at most `MAX_BYTES`, PNG or JPEG by content,
//! at most `MAX_SIDE` pixels a side, decoded with the `image` crate under those limits; then
//! scaled to cover the frame and cropped to it, as I420.

use std::io::Cursor;
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use thiserror::Error;

use crate::media::VideoFrame;

pub const MAX_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_SIDE: u32 = 4096;
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error, PartialEq)]
pub enum BackgroundError {
    #[error("background image is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("background image is not PNG or JPEG")]
    NotAnImage,
    #[error("background image is {width}x{height}; at most {MAX_SIDE} pixels a side")]
    Dimensions { width: u32, height: u32 },
    #[error("background image cannot be decoded: {0}")]
    Decode(String),
    #[error("background image could not be fetched: {0}")]
    Fetch(String),
    #[error("background image fetch timed out after {0:?}")]
    Timeout(Duration),
    #[error("background image source {0:?} is not supported (a path or an http(s) URL)")]
    Source(String),
}

/// Checks and decodes image bytes.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, BackgroundError> {
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
    if width > MAX_SIDE || height > MAX_SIDE || width == 0 || height == 0 {
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
        .to_rgb8())
}

/// Reads, fetches and checks the image `source` names.
pub async fn load(source: &str) -> Result<RgbImage, BackgroundError> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        fetch(source).await?
    } else if source.contains("://") {
        return Err(BackgroundError::Source(source.to_string()));
    } else {
        let meta = tokio::fs::metadata(source)
            .await
            .map_err(|e| BackgroundError::Fetch(e.to_string()))?;
        if meta.len() > MAX_BYTES as u64 {
            return Err(BackgroundError::TooLarge);
        }
        tokio::fs::read(source)
            .await
            .map_err(|e| BackgroundError::Fetch(e.to_string()))?
    };
    tokio::task::spawn_blocking(move || decode(&bytes))
        .await
        .map_err(|e| BackgroundError::Decode(e.to_string()))?
}

async fn fetch(url: &str) -> Result<Vec<u8>, BackgroundError> {
    let work = async {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| BackgroundError::Fetch(e.to_string()))?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| BackgroundError::Fetch(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(BackgroundError::Fetch(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BackgroundError::Fetch(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_BYTES {
                return Err(BackgroundError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| BackgroundError::Timeout(FETCH_TIMEOUT))?
}

/// `image` scaled to cover `width` x `height` and cropped to it (centred), as I420.
pub fn fit(image: &RgbImage, width: u32, height: u32) -> VideoFrame {
    let scale = (width as f32 / image.width() as f32).max(height as f32 / image.height() as f32);
    let (sw, sh) = (
        ((image.width() as f32 * scale).round() as u32).max(width),
        ((image.height() as f32 * scale).round() as u32).max(height),
    );
    let scaled = image::imageops::resize(image, sw, sh, image::imageops::FilterType::Triangle);
    let cropped =
        image::imageops::crop_imm(&scaled, (sw - width) / 2, (sh - height) / 2, width, height)
            .to_image();
    VideoFrame::from_rgb(width, height, cropped.as_raw()).expect("sized above")
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
    fn fitting_covers_the_frame() {
        let frame = fit(&decode(&png(100, 20)).unwrap(), 64, 36);
        assert_eq!((frame.width, frame.height), (64, 36));
        frame.check().unwrap();
    }

    #[tokio::test]
    async fn sources_other_than_paths_and_http_are_refused() {
        assert!(matches!(
            load("ftp://x/y.png").await,
            Err(BackgroundError::Source(_))
        ));
        assert!(matches!(
            load("/no/such/file.png").await,
            Err(BackgroundError::Fetch(_))
        ));
    }
}
