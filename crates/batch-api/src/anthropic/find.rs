//! Adoption without metadata (see the module doc): which listed batch is
//! the one whose create answer was lost, told by the tag in its results.

use super::{batch_tag, tag_of_custom_id, AnthropicClient, ADOPTION_PENDING};
use crate::listing::ListingWalk;
use crate::{ApiError, BatchMeta, ErrorClass, RemoteBatch};

/// What this process knows about a provider batch id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Known {
    /// Its tag ("" when its results carry none).
    Tag(String),
    /// Polled by this process: another batch of ours, with its id recorded.
    Claimed,
}

impl AnthropicClient {
    /// The tag of a finished batch, from the first line of its results
    /// (streamed; the rest is not read). `Ok(None)`: no results or no tag.
    pub(super) async fn results_tag(&self, url: &str) -> Result<Option<String>, ApiError> {
        const WHAT: &str = "read the first result of a batch";
        const MAX_LINE: usize = 8 << 20;
        let url = self.resolve(url);
        let url = url.as_str();
        self.http
            .retry(WHAT, || async move {
                let mut resp = self.http.send(WHAT, self.results_request(url)).await?;
                let mut buf = Vec::new();
                loop {
                    let chunk = resp
                        .chunk()
                        .await
                        .map_err(|e| self.http.transport_error(WHAT, &e))?;
                    let Some(chunk) = chunk else { break };
                    buf.extend_from_slice(&chunk);
                    let first = buf.iter().position(|b| !b.is_ascii_whitespace());
                    let newline =
                        first.and_then(|f| memchr::memchr(b'\n', &buf[f..]).map(|i| f + i));
                    if newline.is_some() || buf.len() > MAX_LINE {
                        break;
                    }
                }
                // Dropping `resp` closes the connection: the rest is not read.
                drop(resp);
                let text = buf.trim_ascii_start();
                let line = match memchr::memchr(b'\n', text) {
                    Some(i) => &text[..i],
                    None => text,
                };
                if line.trim_ascii().is_empty() {
                    return Ok(None);
                }
                #[derive(serde::Deserialize)]
                struct First {
                    custom_id: String,
                }
                match serde_json::from_slice::<First>(line) {
                    Ok(f) => Ok(tag_of_custom_id(&f.custom_id).map(str::to_owned)),
                    Err(e) => Err(ApiError::new(
                        ErrorClass::Ambiguous,
                        format!("{WHAT}: unreadable result line: {e}"),
                    )),
                }
            })
            .await
    }

    pub(super) async fn find_impl(
        &self,
        meta: &BatchMeta,
        not_before: i64,
        count: Option<u64>,
    ) -> Result<Option<RemoteBatch>, ApiError> {
        let want = batch_tag(meta);
        let mut pending: Vec<String> = Vec::new();
        let mut walk = ListingWalk::new(not_before);
        while let Some(batches) = walk.next_page(self).await? {
            for b in batches {
                if walk.is_older(&b) {
                    continue;
                }
                let known = self.known().get(&b.id).cloned();
                match known {
                    Some(Known::Tag(t)) if t == want => return Ok(Some(adopted(b, meta))),
                    Some(_) => continue,
                    None => {}
                }
                if let (Some(n), Some(c)) = (count, b.counts) {
                    if c.total != n {
                        continue;
                    }
                }
                let Some(url) = b.output_file.clone() else {
                    if b.status.is_terminal() {
                        // Ended without results: nothing to adopt there.
                        self.known().insert(b.id.clone(), Known::Tag(String::new()));
                    } else {
                        pending.push(b.id);
                    }
                    continue;
                };
                match self.results_tag(&url).await {
                    Ok(tag) => {
                        let tag = tag.unwrap_or_default();
                        let ours = tag == want;
                        self.known().insert(b.id.clone(), Known::Tag(tag));
                        if ours {
                            return Ok(Some(adopted(b, meta)));
                        }
                    }
                    // Results gone (archived): whatever it was, it cannot be
                    // adopted any more.
                    Err(e) if e.is_not_found() => {
                        self.known().insert(b.id.clone(), Known::Tag(String::new()));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if pending.is_empty() {
            return Ok(None);
        }
        tracing::info!(
            batch = %meta.batch_number,
            attempt = meta.attempt,
            candidates = pending.len(),
            first = %pending[0],
            "looking for a batch whose create answer was lost: waiting for in-progress batches to end, \
             since only their results tell whether one of them is it (anthropic batches carry no metadata)"
        );
        let mut e = ApiError::new(
            ErrorClass::Transient,
            format!(
                "find batch {} attempt {}: {} in-progress batch(es) ({}{}) may be it; their results will tell once they end",
                meta.batch_number,
                meta.attempt,
                pending.len(),
                pending[0],
                if pending.len() > 1 { ", …" } else { "" }
            ),
        );
        e.code = Some(ADOPTION_PENDING.to_owned());
        Err(e)
    }
}

fn adopted(mut b: RemoteBatch, meta: &BatchMeta) -> RemoteBatch {
    b.meta = Some(meta.clone());
    b
}
