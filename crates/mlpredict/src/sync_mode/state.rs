//! Durable progress of a synchronous pipeline, in the same SQLite database
//! as batch mode (`state_store::Store`, `{local.dir}/{pipeline}/state.db`):
//! the lane watermark and its fingerprint, the committed sink lengths, and
//! in `meta` what only this mode needs (`sync.ahead`: records emitted
//! beyond the watermark in ALLOW_UNORDERED mode).
//!
//! All of it must change in one transaction. `Store` offers watermark +
//! sinks in one transaction (`commit_cut`) but writes `meta` on its own, so
//! this module commits through a second connection to the same database,
//! with the schema `Store::open` created (tables `lanes`, `sinks`, `meta`).
//! A `Store` method taking meta entries would replace this (see the report
//! in docs/BENCHMARKS.md's notes on sync mode).

use std::path::Path;

use anyhow::Context;
use rusqlite::{params, Connection};

pub const AHEAD_KEY: &str = "sync.ahead";

pub struct Committer {
    conn: Connection,
}

impl Committer {
    pub fn open(db: &Path) -> anyhow::Result<Self> {
        let conn =
            Connection::open(db).with_context(|| format!("state database {}", db.display()))?;
        // synchronous is per connection: FULL like the store's own.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )
        .with_context(|| format!("state database {}", db.display()))?;
        Ok(Self { conn })
    }

    /// One transaction: watermark + fingerprint of `lane`, sink lengths and
    /// meta entries.
    pub fn commit(
        &mut self,
        lane: u32,
        watermark: u64,
        fingerprint: &str,
        sinks: &[(&str, u64)],
        meta: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO lanes(lane, watermark, fingerprint) VALUES (?1, ?2, ?3) \
             ON CONFLICT(lane) DO UPDATE SET watermark = ?2, fingerprint = ?3",
        )?
        .execute(params![lane as i64, watermark as i64, fingerprint])?;
        for (name, len) in sinks {
            tx.prepare_cached(
                "INSERT INTO sinks(name, committed_len) VALUES (?1, ?2) \
                 ON CONFLICT(name) DO UPDATE SET committed_len = ?2",
            )?
            .execute(params![name, *len as i64])?;
        }
        for (key, value) in meta {
            tx.prepare_cached(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
            )?
            .execute(params![key, value])?;
        }
        tx.commit().context("committing sync progress")?;
        Ok(())
    }
}
