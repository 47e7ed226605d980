//! A recording's media for the browser through the API itself (same origin, so no CORS on
//! the bucket is needed and the bearer authorises it like `/link`): `GET
//! /v1/recordings/{id}/media` with HTTP Range (one range per request, at most
//! [`MAX_RANGE_BYTES`] answered per request), and the byte-range HLS playlist pointing at it
//! (`playlist.m3u8?via=api`).

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::super::auth::Caller;
use super::super::openapi::schema;
use super::super::recordings::linkable;
use super::super::{ApiError, ApiState, err, not_found};
use crate::recording::RecordingMeta;
use crate::recording::storage::Storage;

/// The most bytes one ranged request is answered with (a longer or open range gets this much,
/// with a `Content-Range` saying so, as HTTP allows).
pub const MAX_RANGE_BYTES: u64 = 8 * 1024 * 1024;
/// A longer `Range` header is refused (416) without being parsed.
const MAX_RANGE_HEADER: usize = 100;
/// Chunks read from a local file.
const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of an object of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No (usable) Range header: the whole object, 200.
    Whole,
    /// Bytes `start..=end`, 206 (already capped to [`MAX_RANGE_BYTES`]).
    Part { start: u64, end: u64 },
    /// 416: not satisfiable, several ranges, or malformed.
    Unsatisfiable,
}

/// Parses a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for an object of `len` bytes.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeAsk {
    let Some(header) = header else {
        return RangeAsk::Whole;
    };
    if header.len() > MAX_RANGE_HEADER {
        return RangeAsk::Unsatisfiable;
    }
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        // Another unit: ignored, as HTTP says.
        return RangeAsk::Whole;
    };
    if spec.contains(',') || len == 0 {
        return RangeAsk::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(b) {
            Some(0) | None => return RangeAsk::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len - 1),
        },
        (false, true) => match number(a) {
            Some(start) => (start, len - 1),
            None => return RangeAsk::Unsatisfiable,
        },
        (false, false) => match (number(a), number(b)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(len - 1)),
            _ => return RangeAsk::Unsatisfiable,
        },
        (true, true) => return RangeAsk::Unsatisfiable,
    };
    if start >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part {
        start,
        end: end.min(start + MAX_RANGE_BYTES - 1),
    }
}

/// A recording object's path under the local recordings folder (relative keys only).
fn local_path(dir: &FsPath, key: &str) -> Result<PathBuf, ApiError> {
    let path = FsPath::new(key);
    if key.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(not_found("recording"));
    }
    Ok(dir.join(path))
}

/// The text of one of the recording's objects (its stored playlist).
pub(crate) async fn object_text(storage: &Storage, key: &str) -> Result<String, ApiError> {
    match storage {
        Storage::Local { dir } => {
            let path = local_path(dir, key)?;
            tokio::fs::read_to_string(&path).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    not_found("recording")
                } else {
                    tracing::warn!(error = %e, path = %path.display(), "cannot read a recording object");
                    err(StatusCode::SERVICE_UNAVAILABLE, "recording storage is unavailable")
                }
            })
        }
        Storage::S3(s3) => {
            if s3
                .head(key)
                .await
                .map_err(crate::recording::RecordingError::from)?
                .is_none()
            {
                return Err(not_found("recording"));
            }
            let bytes = s3
                .get_object(key)
                .await
                .map_err(crate::recording::RecordingError::from)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// The byte-range playlist with its media at `media` (relative to the playlist's URL).
pub(crate) async fn api_playlist(
    storage: &Storage,
    meta: &RecordingMeta,
) -> Result<String, ApiError> {
    let stored = object_text(storage, &crate::recording::hls::playlist_key(&meta.key)).await?;
    Ok(crate::recording::hls::with_media(&stored, "media"))
}

#[utoipa::path(
    get,
    path = "/v1/recordings/{id}/media",
    operation_id = "recording_media",
    tag = "recordings",
    summary = "The recording's MP4 through the API, with HTTP Range (one range, at most 8 MiB a request)",
    params(
        ("id" = String, Path, description = "The recording's id"),
        ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    security(("api_key" = []), ("participant_token" = [])),
    responses(
        (status = 200, description = "The whole recording", body = Vec<u8>, content_type = "video/mp4"),
        (status = 206, description = "The range asked for (or its first 8 MiB)", body = Vec<u8>, content_type = "video/mp4"),
        schema::NoApiKey,
        (status = 404, description = "No such recording in the caller's rooms", body = schema::ErrorBody),
        (status = 416, description = "Not satisfiable, several ranges, or malformed", body = schema::ErrorBody),
        schema::RecordingErrors,
    )
)]
pub(crate) async fn media(
    State(state): State<Arc<ApiState>>,
    Extension(who): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (meta, recorder, _) = linkable(&state, &who, &id).await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match &*recorder.storage {
        Storage::Local { dir } => {
            let path = local_path(dir, &meta.key)?;
            let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    not_found("recording")
                } else {
                    err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "recording storage is unavailable",
                    )
                }
            })?;
            let len = file
                .metadata()
                .await
                .map_err(|_| {
                    err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "recording storage is unavailable",
                    )
                })?
                .len();
            let (status, start, end) = match answer(range, len)? {
                Some(r) => r,
                None => return Ok(empty()),
            };
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|_| {
                    err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "recording storage is unavailable",
                    )
                })?;
            let body = Body::from_stream(futures_util::stream::unfold(
                (file, end + 1 - start),
                |(mut file, left)| async move {
                    if left == 0 {
                        return None;
                    }
                    let mut buf = vec![0u8; CHUNK.min(left as usize)];
                    match file.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((
                                Ok::<_, std::io::Error>(Bytes::from(buf)),
                                (file, left - n as u64),
                            ))
                        }
                        Err(e) => Some((Err(e), (file, 0))),
                    }
                },
            ));
            Ok(respond(status, start, end, len, body))
        }
        Storage::S3(s3) => {
            let head = s3
                .head(&meta.key)
                .await
                .map_err(crate::recording::RecordingError::from)?
                .ok_or_else(|| not_found("recording"))?;
            let len = head.size;
            let (status, start, end) = match answer(range, len)? {
                Some(r) => r,
                None => return Ok(empty()),
            };
            let stream = s3
                .get_object_range(&meta.key, start, end)
                .await
                .map_err(crate::recording::RecordingError::from)?;
            let body =
                Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
                    s.next()
                        .await
                        .map(|chunk| (chunk.map_err(std::io::Error::other), s))
                }));
            Ok(respond(status, start, end, len, body))
        }
    }
}

/// The status and byte span to answer with; `None` for an empty object; 416 as an error.
fn answer(range: Option<&str>, len: u64) -> Result<Option<(StatusCode, u64, u64)>, ApiError> {
    match parse_range(range, len) {
        RangeAsk::Whole if len == 0 => Ok(None),
        RangeAsk::Whole => Ok(Some((StatusCode::OK, 0, len - 1))),
        RangeAsk::Part { start, end } => Ok(Some((StatusCode::PARTIAL_CONTENT, start, end))),
        RangeAsk::Unsatisfiable => Err(ApiError(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("one range within the {len} bytes (bytes=a-b) is required"),
        )),
    }
}

fn empty() -> Response {
    (
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::ACCEPT_RANGES, "bytes"),
        ],
        Body::empty(),
    )
        .into_response()
}

fn respond(status: StatusCode, start: u64, end: u64, len: u64, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end + 1 - start));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_and_bounded() {
        let len = 100;
        assert_eq!(parse_range(None, len), RangeAsk::Whole);
        assert_eq!(
            parse_range(Some("bytes=0-9"), len),
            RangeAsk::Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), len),
            RangeAsk::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), len),
            RangeAsk::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-1000"), len),
            RangeAsk::Part { start: 0, end: 99 }
        );
        // An end past the object is cut to it.
        assert_eq!(
            parse_range(Some("bytes=50-1000"), len),
            RangeAsk::Part { start: 50, end: 99 }
        );
        assert_eq!(parse_range(Some("items=0-9"), len), RangeAsk::Whole);
        for bad in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=9-0",
            "bytes=-0",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=0-9,20-29",
            "bytes=5",
            "bytes= - ",
        ] {
            assert_eq!(
                parse_range(Some(bad), len),
                RangeAsk::Unsatisfiable,
                "{bad}"
            );
        }
        let long = format!("bytes={}-", "0".repeat(200));
        assert_eq!(parse_range(Some(&long), len), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), RangeAsk::Unsatisfiable);
        // A huge object: at most MAX_RANGE_BYTES a request, whatever was asked.
        let big = 10 * MAX_RANGE_BYTES;
        assert_eq!(
            parse_range(Some("bytes=0-"), big),
            RangeAsk::Part {
                start: 0,
                end: MAX_RANGE_BYTES - 1
            }
        );
        assert_eq!(
            parse_range(Some(&format!("bytes=5-{}", big - 1)), big),
            RangeAsk::Part {
                start: 5,
                end: 5 + MAX_RANGE_BYTES - 1
            }
        );
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), big),
            RangeAsk::Unsatisfiable
        );
    }

    #[test]
    fn local_keys_stay_in_the_folder() {
        let dir = FsPath::new("/recordings");
        assert!(local_path(dir, "room/rec.mp4").is_ok());
        for bad in ["", "../etc/passwd", "/etc/passwd", "room/../../x", "./x"] {
            assert!(local_path(dir, bad).is_err(), "{bad}");
        }
    }
}
