//! An S3-compatible bucket for recordings, over aws-sdk-s3 configured by hand (no aws-config:
//! no environment, profile or instance-metadata lookups). Every key gets `S3Config.prefix`
//! prepended. Timeouts are short so an unreachable server fails fast; callers that must not
//! lose data ([`super::storage::Storage::deliver`]) retry on their own.
//!
//! The secret key is kept only inside the SDK's credentials (and here, to scrub it from error
//! text): it is never logged, printed or put in an error.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::RecordingError;
use crate::config::S3Config;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole attempt (send and answer) for everything but part uploads.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of failure an S3 call had, as far as the caller's next step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorKind {
    /// The multipart upload is unknown to the server (aborted, expired or completed).
    NoSuchUpload,
    /// No such object (or bucket).
    NotFound,
    /// Refused: bad credentials, bad signature, no permission (HTTP 401/403).
    Denied,
    /// Reading the local file to upload failed (not the server's fault).
    LocalIo,
    /// Anything else: unreachable server, timeout, 5xx, throttling, malformed answer.
    Other,
}

#[derive(Debug, Clone)]
pub struct S3Error {
    pub operation: &'static str,
    pub kind: S3ErrorKind,
    /// Scrubbed of the secret key.
    pub message: String,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3 {}: {}", self.operation, self.message)
    }
}

impl std::error::Error for S3Error {}

impl From<S3Error> for RecordingError {
    fn from(e: S3Error) -> Self {
        RecordingError::S3 {
            operation: e.operation,
            message: e.message,
        }
    }
}

/// An object's size and entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: Option<String>,
}

/// One listed object; `key` is relative to the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub part_number: i32,
    pub etag: Option<String>,
    pub size: u64,
}

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    part_size: u64,
    /// Only to scrub error text.
    secret: String,
    retry_initial: Duration,
    retry_max: Duration,
    bucket_ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    pub fn new(cfg: &S3Config) -> Result<Self, RecordingError> {
        let invalid = |message: &str| RecordingError::S3 {
            operation: "configure",
            message: message.to_string(),
        };
        if !cfg.endpoint.starts_with("http://") && !cfg.endpoint.starts_with("https://") {
            return Err(invalid("endpoint must be an http:// or https:// URL"));
        }
        if cfg.bucket.is_empty() {
            return Err(invalid("bucket is required"));
        }
        if cfg.access_key.is_empty() || cfg.secret_key.is_empty() {
            return Err(invalid("access_key and secret_key are required"));
        }
        let region = if cfg.region.is_empty() {
            "us-east-1".to_string()
        } else {
            cfg.region.clone()
        };
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .endpoint_url(cfg.endpoint.trim_end_matches('/'))
            .credentials_provider(Credentials::new(
                cfg.access_key.clone(),
                cfg.secret_key.clone(),
                None,
                None,
                "meeting-agent-config",
            ))
            .force_path_style(cfg.force_path_style)
            // Plain Content-Length bodies and no checksum header on presigned GETs (which a
            // browser could not send): widest compatibility with S3-compatible servers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(ATTEMPT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            part_size: u64::from(cfg.part_size_mib.max(5)) * 1024 * 1024,
            secret: cfg.secret_key.clone(),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(10),
            bucket_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Backoff between attempts of a delivery that must not give up: `initial`, doubling to
    /// `max` (default 0.5 s to 10 s).
    pub fn with_retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }

    /// `(initial, max)` backoff of deliveries.
    pub fn retry_backoff(&self) -> (Duration, Duration) {
        (self.retry_initial, self.retry_max)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Multipart part size in bytes (`part_size_mib`, at least 5 MiB).
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// The key in the bucket: the prefix, then `key`.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn error<E>(
        &self,
        operation: &'static str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let kind = match (code.as_deref(), status) {
            (Some("NoSuchUpload"), _) => S3ErrorKind::NoSuchUpload,
            (Some("NoSuchKey" | "NotFound" | "NoSuchBucket"), _) | (_, Some(404)) => {
                S3ErrorKind::NotFound
            }
            (_, Some(401 | 403)) => S3ErrorKind::Denied,
            _ => S3ErrorKind::Other,
        };
        let mut message = match (&err, code) {
            (SdkError::ServiceError(_), Some(code)) => {
                let detail = err.message().unwrap_or("");
                let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
                if detail.is_empty() {
                    format!("{code}{status}")
                } else {
                    format!("{code}: {detail}{status}")
                }
            }
            (SdkError::ServiceError(_), None) => match status {
                Some(s) => format!("HTTP {s}"),
                None => error_chain(&err),
            },
            _ => error_chain(&err),
        };
        if kind == S3ErrorKind::Denied {
            message.push_str(" - check recording.s3.access_key and secret_key");
        }
        S3Error {
            operation,
            kind,
            message: self.scrub(message),
        }
    }

    fn scrub(&self, text: String) -> String {
        if self.secret.is_empty() {
            text
        } else {
            text.replace(&self.secret, "<redacted>")
        }
    }

    /// Whether the bucket is there and these credentials may see it.
    pub async fn head_bucket(&self) -> Result<(), S3Error> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.error("head bucket", e))?;
        Ok(())
    }

    /// Creates the bucket unless it is there (or already ours). Once it succeeded, later
    /// calls on this store (and its clones) return at once.
    pub async fn ensure_bucket(&self) -> Result<(), S3Error> {
        if self.bucket_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.ensure_bucket_uncached().await?;
        self.bucket_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn ensure_bucket_uncached(&self) -> Result<(), S3Error> {
        // ListObjectsV2 rather than HeadBucket: a HEAD error has no body, so no error code
        // to tell a wrong key from a policy.
        match self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => {
                let code = e.code().map(str::to_string);
                let e = self.error("check bucket", e);
                match e.kind {
                    S3ErrorKind::NotFound => {}
                    // A policy may refuse listing and still allow object writes; a refused
                    // key or signature has its own code.
                    S3ErrorKind::Denied if code.as_deref() == Some("AccessDenied") => {
                        tracing::warn!(bucket = %self.bucket, error = %e, "cannot list the bucket; assuming it exists");
                        return Ok(());
                    }
                    _ => return Err(e),
                }
            }
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created the recordings bucket");
                Ok(())
            }
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => {
                let e = self.error("create bucket", e);
                // Created meanwhile by someone with the same keys?
                if self
                    .client
                    .head_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .is_ok()
                {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, S3Error> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| self.error("create multipart upload", e))?;
        out.upload_id.ok_or_else(|| S3Error {
            operation: "create multipart upload",
            kind: S3ErrorKind::Other,
            message: "the answer has no upload id".into(),
        })
    }

    /// Uploads `len` bytes of `path` from `offset` as part `part_number`, read from the file
    /// (not held in memory); returns the part's entity tag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<String, S3Error> {
        let io_error = |e: &dyn std::fmt::Display| S3Error {
            operation: "upload part",
            kind: S3ErrorKind::LocalIo,
            message: format!("reading {}: {e}", path.display()),
        };
        let body = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| io_error(&e))?;
        // Room for slow links: 10 s plus 2 s per MiB.
        let attempt = ATTEMPT_TIMEOUT + Duration::from_secs(2 * len.div_ceil(1024 * 1024));
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(len as i64)
            .body(body)
            .customize()
            .config_override(
                aws_sdk_s3::Config::builder().timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .read_timeout(attempt)
                        .operation_attempt_timeout(attempt)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| self.error("upload part", e))?;
        out.e_tag.ok_or_else(|| S3Error {
            operation: "upload part",
            kind: S3ErrorKind::Other,
            message: "the answer has no ETag".into(),
        })
    }

    /// Completes a multipart upload from `(part number, etag)` in order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), S3Error> {
        let parts = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("complete multipart upload", e))?;
        Ok(())
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.error("abort multipart upload", e))?;
        Ok(())
    }

    /// Parts the server holds for an upload (first 1000).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartEntry>, S3Error> {
        let out = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.error("list parts", e))?;
        Ok(out
            .parts
            .unwrap_or_default()
            .into_iter()
            .map(|p| PartEntry {
                part_number: p.part_number.unwrap_or_default(),
                etag: p.e_tag,
                size: p.size.unwrap_or_default().max(0) as u64,
            })
            .collect())
    }

    /// Puts a small object from memory.
    pub async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("put object", e))?;
        Ok(())
    }

    /// Reads a (small) object into memory.
    pub async fn get_object(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("get object", e))?;
        let bytes = out.body.collect().await.map_err(|e| S3Error {
            operation: "get object",
            kind: S3ErrorKind::Other,
            message: self.scrub(error_chain(&e)),
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    /// A presigned GET link valid for `expiry` (at most 7 days).
    pub async fn presign_get(&self, key: &str, expiry: Duration) -> Result<String, S3Error> {
        let presigning = PresigningConfig::expires_in(expiry).map_err(|e| S3Error {
            operation: "presign",
            kind: S3ErrorKind::Other,
            message: e.to_string(),
        })?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .presigned(presigning)
            .await
            .map_err(|e| self.error("presign", e))?;
        Ok(request.uri().to_string())
    }

    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("delete object", e))?;
        Ok(())
    }

    /// Every object whose key (after the store's prefix) starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectEntry>, S3Error> {
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full_key(prefix))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("list objects", e))?;
            for object in out.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                let Some(key) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                entries.push(ObjectEntry {
                    key: key.to_string(),
                    size: object.size.unwrap_or_default().max(0) as u64,
                });
            }
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        Ok(entries)
    }

    /// `Ok(None)` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                size: out.content_length.unwrap_or_default().max(0) as u64,
                etag: out.e_tag,
            })),
            Err(e) => {
                let e = self.error("head object", e);
                if e.kind == S3ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// `error: cause: cause`, each level once (the SDK's layers often repeat their source).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

impl S3Store {
    /// Bytes `start..=end` of an object, as a stream (the web console's ranged media reads).
    pub async fn get_object_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(|e| self.error("get object", e))?;
        Ok(out.body)
    }
}
