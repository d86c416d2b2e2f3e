//! Walking a newest-first listing back to a point in time: what every
//! client's `find` does to adopt a batch whose create answer was lost.

use crate::{ApiError, BatchApi, BatchMeta, RemoteBatch};

/// The pages of `list`, newest first, until a page reaches batches created
/// before `not_before` (that page is still returned whole).
pub(crate) struct ListingWalk {
    not_before: i64,
    after: Option<String>,
    done: bool,
}

impl ListingWalk {
    pub(crate) fn new(not_before: i64) -> Self {
        Self {
            not_before,
            after: None,
            done: false,
        }
    }

    /// A batch created before the walk's window.
    pub(crate) fn is_older(&self, b: &RemoteBatch) -> bool {
        b.created_at.is_some_and(|t| t < self.not_before)
    }

    /// The next page's batches; `None` when the walk is over.
    pub(crate) async fn next_page<A: BatchApi + ?Sized>(
        &mut self,
        api: &A,
    ) -> Result<Option<Vec<RemoteBatch>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let page = api.list(self.after.as_deref(), 100).await?;
        let older = page.batches.iter().any(|b| self.is_older(b));
        match page.next_after {
            Some(next) if !older => self.after = Some(next),
            _ => self.done = true,
        }
        Ok(Some(page.batches))
    }
}

/// The default [`BatchApi::find`]: page through `list` newest-first until a
/// batch carries `meta`, or the page reached batches older than
/// `not_before`.
pub async fn find_by_listing<A: BatchApi + ?Sized>(
    api: &A,
    meta: &BatchMeta,
    not_before: i64,
) -> Result<Option<RemoteBatch>, ApiError> {
    let mut walk = ListingWalk::new(not_before);
    while let Some(batches) = walk.next_page(api).await? {
        if let Some(b) = batches.into_iter().find(|b| b.meta.as_ref() == Some(meta)) {
            return Ok(Some(b));
        }
    }
    Ok(None)
}
