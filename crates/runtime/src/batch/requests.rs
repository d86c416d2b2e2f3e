//! A batch's request file, rebuilt from the source when it is missing (a
//! crash before it was sealed, a retry batch, or a lane taken over from
//! another instance).

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use batch_api::wire::RequestTemplate;
use batch_core::{write_custom_id, Batch};

use super::local::LocalDir;
use crate::ledger::BatchRecords;
use crate::record::Fields;

pub fn ensure_requests(
    local: &LocalDir,
    template: &RequestTemplate,
    fields: &Fields<'_>,
    batch: &Batch,
    records: &mut dyn BatchRecords,
) -> anyhow::Result<PathBuf> {
    let path = local.requests(batch.id);
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("part");
    let mut w = LocalDir::create(&tmp)?;
    let mut custom_id = String::new();
    let mut written = 0u32;
    let mut out = Vec::new();
    let mut io_error = None;
    records.visit(batch, &mut |pos, _key, line| {
        if let Ok(u) = fields.parse(line) {
            write_custom_id(&mut custom_id, batch.lane, pos);
            out.clear();
            template.write_line(&mut out, &custom_id, u.input.get().as_bytes());
            if let Err(e) = w.write_all(&out) {
                io_error.get_or_insert(e);
            }
            written += 1;
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if written != batch.records {
        bail!(
            "batch {} should hold {} records but the source now gives {written}: the source changed under the pipeline; \
             restore the input as it was, or start a new pipeline (another pipeline.name or ml.batch.local.dir)",
            batch.number,
            batch.records
        );
    }
    local.seal(w, &tmp, &path)?;
    Ok(path)
}
