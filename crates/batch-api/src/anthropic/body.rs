//! The create request's body: `{"requests":[line,line,…]}` streamed from
//! the batch file with every custom_id tagged, never held in memory.

use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{tag_line, ANTHROPIC_LIMITS, MAX_CREATE_BYTES};
use crate::ApiError;

const BODY_HEAD: &[u8] = br#"{"requests":["#;
const BODY_TAIL: &[u8] = b"]}";
const CHUNK: usize = 64 * 1024;

/// Reads a batch file and yields the create body in chunks.
pub(super) struct BodyWriter {
    reader: BufReader<tokio::fs::File>,
    tag: String,
    line: Vec<u8>,
    pub(super) requests: u64,
    started: bool,
    done: bool,
}

impl BodyWriter {
    pub(super) async fn open(path: &Path, tag: String) -> Result<Self, ApiError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ApiError::local_io("create message batch", path, &e))?;
        Ok(Self {
            reader: BufReader::with_capacity(CHUNK, file),
            tag,
            line: Vec::new(),
            requests: 0,
            started: false,
            done: false,
        })
    }

    /// The next chunk of the body, `None` at the end.
    pub(super) async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(CHUNK + 1024);
        if !self.started {
            self.started = true;
            out.extend_from_slice(BODY_HEAD);
        }
        while out.len() < CHUNK {
            self.line.clear();
            let n = self.reader.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                out.extend_from_slice(BODY_TAIL);
                self.done = true;
                break;
            }
            let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.trim_ascii().is_empty() {
                continue;
            }
            if self.requests > 0 {
                out.push(b',');
            }
            self.requests += 1;
            tag_line(line, &self.tag, &mut out).map_err(|m| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("request {}: {m}", self.requests),
                )
            })?;
        }
        Ok(Some(out))
    }
}

/// The create request's body, streamed from the batch file, and its exact
/// length. A first pass counts it (sent as content-length) and checks every
/// line and the limits before anything is sent.
pub(super) async fn create_body(
    what: &str,
    path: &Path,
    tag: &str,
) -> Result<(reqwest::Body, u64), ApiError> {
    let mut w = BodyWriter::open(path, tag.to_owned()).await?;
    let mut len: u64 = 0;
    while let Some(chunk) = w
        .next_chunk()
        .await
        .map_err(|e| ApiError::local_io(what, path, &e))?
    {
        len += chunk.len() as u64;
    }
    let requests = w.requests;
    if requests == 0 {
        return Err(ApiError::permanent(format!(
            "{what}: {} holds no request",
            path.display()
        )));
    }
    if requests > ANTHROPIC_LIMITS.max_requests {
        return Err(ApiError::permanent(format!(
            "{what}: {requests} requests, more than anthropic's {} per batch",
            ANTHROPIC_LIMITS.max_requests
        )));
    }
    if len > MAX_CREATE_BYTES {
        return Err(ApiError::permanent(format!(
            "{what}: the request would be {len} bytes, more than anthropic's {MAX_CREATE_BYTES}"
        )));
    }
    let writer = BodyWriter::open(path, tag.to_owned()).await?;
    let stream = futures_util::stream::try_unfold(writer, |mut w| async move {
        Ok::<_, std::io::Error>(w.next_chunk().await?.map(|c| (Bytes::from(c), w)))
    });
    Ok((reqwest::Body::wrap_stream(stream), len))
}
