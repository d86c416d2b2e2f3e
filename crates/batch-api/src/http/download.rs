//! Streaming downloads of result files, to disk (fsynced) or memory, with
//! the length checked against `content-length`.

use std::path::Path;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, Response};
use tokio::io::AsyncWriteExt;

use super::Http;
use crate::wire::JsonLinesNormalizer;
use crate::{ApiError, ErrorClass};

/// Where a download goes.
#[derive(Debug, Clone, Copy)]
pub enum DownloadTo<'a> {
    /// Created or truncated, fsynced at the end.
    File(&'a Path),
    /// Kept in memory and returned.
    Memory,
}

/// What a download produced.
#[derive(Debug)]
pub enum Downloaded {
    /// The bytes written to the file.
    File(u64),
    Memory(Vec<u8>),
}

impl Http {
    /// GET `url` and stream the body into `to`: a file (created or
    /// truncated, fsynced at the end) or memory, passing each chunk through
    /// `normalize` when given. One attempt; wrap in [`retry`](Self::retry).
    pub(crate) async fn download_once(
        &self,
        what: &str,
        url: &str,
        to: DownloadTo<'_>,
        normalize: Option<JsonLinesNormalizer>,
    ) -> Result<Downloaded, ApiError> {
        self.download_request(what, self.req_untimed(Method::GET, url), to, normalize)
            .await
    }

    /// [`download_once`](Self::download_once) with a prepared request.
    pub(crate) async fn download_request(
        &self,
        what: &str,
        rb: RequestBuilder,
        to: DownloadTo<'_>,
        normalize: Option<JsonLinesNormalizer>,
    ) -> Result<Downloaded, ApiError> {
        let resp = self.send(what, rb).await?;
        let body = Body::new(resp, normalize);
        match to {
            DownloadTo::Memory => self.stream_to_memory(what, body).await,
            DownloadTo::File(dest) => {
                let res = self.stream_to_file(what, body, dest).await;
                if res.is_err() {
                    // Leave no partial file that could pass for a result file.
                    let _ = tokio::fs::remove_file(dest).await;
                }
                res
            }
        }
    }

    async fn stream_to_memory(&self, what: &str, mut body: Body) -> Result<Downloaded, ApiError> {
        // The length is only a hint: cap what is reserved before it arrives.
        let hint = body.expected.unwrap_or(0).min(64 << 20) as usize;
        let mut out = Vec::with_capacity(hint);
        while let Some(chunk) = body.next(self, what).await? {
            out.extend_from_slice(chunk);
        }
        Ok(Downloaded::Memory(out))
    }

    async fn stream_to_file(
        &self,
        what: &str,
        mut body: Body,
        dest: &Path,
    ) -> Result<Downloaded, ApiError> {
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        let mut written: u64 = 0;
        while let Some(chunk) = body.next(self, what).await? {
            file.write_all(chunk)
                .await
                .map_err(|e| ApiError::local_io(what, dest, &e))?;
            written += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        file.sync_all()
            .await
            .map_err(|e| ApiError::local_io(what, dest, &e))?;
        Ok(Downloaded::File(written))
    }
}

/// A response body read chunk by chunk, normalised when asked, with its
/// length checked against `content-length` at the end.
struct Body {
    stream: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    normalize: Option<JsonLinesNormalizer>,
    expected: Option<u64>,
    received: u64,
    chunk: Bytes,
    buf: Vec<u8>,
    done: bool,
}

impl Body {
    fn new(resp: Response, normalize: Option<JsonLinesNormalizer>) -> Self {
        Self {
            expected: resp.content_length(),
            stream: Box::pin(resp.bytes_stream()),
            normalize,
            received: 0,
            chunk: Bytes::new(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next piece of output; `None` at the end.
    async fn next(&mut self, http: &Http, what: &str) -> Result<Option<&[u8]>, ApiError> {
        if self.done {
            return Ok(None);
        }
        match self.stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| http.transport_error(what, &e))?;
                self.received += chunk.len() as u64;
                match self.normalize.as_mut() {
                    Some(n) => {
                        self.buf.clear();
                        n.push(&chunk, &mut self.buf);
                        Ok(Some(&self.buf))
                    }
                    None => {
                        self.chunk = chunk;
                        Ok(Some(&self.chunk))
                    }
                }
            }
            None => {
                self.done = true;
                if let Some(expected) = self.expected {
                    if expected != self.received {
                        return Err(ApiError::new(
                            ErrorClass::Ambiguous,
                            format!(
                                "{what}: truncated download: {} of {expected} bytes",
                                self.received
                            ),
                        ));
                    }
                }
                self.buf.clear();
                if let Some(n) = self.normalize.as_mut() {
                    n.finish(&mut self.buf);
                }
                Ok((!self.buf.is_empty()).then_some(&self.buf[..]))
            }
        }
    }
}
