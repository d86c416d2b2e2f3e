//! Request helpers: URL segments and batch files streamed as upload bodies.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::AsyncReadExt;

use crate::ApiError;

/// Join a base URL and a path segment, percent-encoding the segment.
pub(crate) fn join_segment(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + 1 + segment.len());
    out.push_str(base.trim_end_matches('/'));
    out.push('/');
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file on disk as a body stream, in 64 KiB chunks (never all in RAM).
fn file_stream(
    file: tokio::fs::File,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let n = file.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| (buf.freeze(), file)))
    })
}

/// A multipart file part streamed from `path`, and the file's length.
pub(crate) async fn file_part(
    what: &str,
    path: &Path,
    file_name: &str,
) -> Result<(reqwest::multipart::Part, u64), ApiError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::local_io(what, path, &e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::local_io(what, path, &e))?
        .len();
    let body = reqwest::Body::wrap_stream(file_stream(file));
    let part = reqwest::multipart::Part::stream_with_length(body, len)
        .file_name(file_name.to_owned())
        .mime_str("application/jsonl")
        .map_err(|e| ApiError::permanent(format!("{what}: {e}")))?;
    Ok((part, len))
}

/// Time to allow for sending `bytes` on top of the request timeout
/// (assumes at least 1 MiB/s).
pub(crate) fn upload_timeout(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes / (1024 * 1024))
}
