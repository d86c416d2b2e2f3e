//! Durable pipeline state in SQLite (WAL, `synchronous=FULL`): lanes and
//! their watermarks, every batch with its life-cycle phase and provider ids,
//! and the committed length of each file sink. The schema is documented in
//! docs/STATE.md so that operators can query it with the `sqlite3` shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use batch_core::{Batch, BatchFailure, LaneId, Millis, Phase, Position, RemoteState};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lanes (
    lane        INTEGER PRIMARY KEY,
    watermark   INTEGER NOT NULL,
    fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id              INTEGER PRIMARY KEY,
    lane            INTEGER NOT NULL,
    number          TEXT NOT NULL,
    first_pos       INTEGER NOT NULL,
    end_pos         INTEGER NOT NULL,
    members         TEXT,
    generation      INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    records         INTEGER NOT NULL,
    phase           TEXT NOT NULL,
    planned_at      INTEGER NOT NULL,
    submitted_at    INTEGER,
    file_id         TEXT,
    remote_id       TEXT,
    remote_state    TEXT,
    output_file     TEXT,
    error_file      TEXT,
    failure_code    TEXT,
    failure_message TEXT,
    emitted_at      INTEGER,
    first_submitted_at INTEGER,
    fault_retries   INTEGER,
    submissions     INTEGER,
    tokens          INTEGER,
    estimated_cost  INTEGER
);
CREATE INDEX IF NOT EXISTS batches_open ON batches(phase) WHERE phase <> 'emitted';
CREATE TABLE IF NOT EXISTS sinks (
    name          TEXT PRIMARY KEY,
    committed_len INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path} has schema version {found}; this mlpredict understands {SCHEMA_VERSION}")]
    Version { path: PathBuf, found: i64 },
    #[error("state database {path}: bad row in batches (id {id}): {what}")]
    BadRow {
        path: PathBuf,
        id: i64,
        what: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// What a start needs to rebuild the core.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub lanes: Vec<(LaneId, Position)>,
    /// Batches not yet emitted, in id order.
    pub open_batches: Vec<Batch>,
    pub next_id: u64,
    pub sinks: BTreeMap<String, u64>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (or create) `dir/state.db`, creating `dir` with mode 0700.
    pub fn open(dir: &Path) -> Result<Store> {
        create_private_dir(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let store = Store { conn, path };
        store.init()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn init(&self) -> Result<()> {
        // FULL: a commit survives power loss, not only a process kill.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
            )
            .map_err(self.err())?;
        self.conn.execute_batch(SCHEMA).map_err(self.err())?;
        self.add_missing_columns()?;
        match self.meta("schema_version")? {
            None => self.set_meta("schema_version", &SCHEMA_VERSION.to_string())?,
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(StoreError::Version {
                    path: self.path.clone(),
                    found: v.parse().unwrap_or(-1),
                });
            }
        }
        Ok(())
    }

    /// Columns added after version 1 shipped: nullable, so a database
    /// written before them reads as "not known" (see `Batch`'s fields).
    fn add_missing_columns(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('batches')")
            .map_err(self.err())?;
        let have: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err())?;
        for column in [
            "first_submitted_at",
            "fault_retries",
            "submissions",
            "tokens",
            "estimated_cost",
        ] {
            if !have.iter().any(|c| c == column) {
                self.conn
                    .execute_batch(&format!("ALTER TABLE batches ADD COLUMN {column} INTEGER"))
                    .map_err(self.err())?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        set_meta(&self.conn, key, value).map_err(self.err())
    }

    pub fn load(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        let mut stmt = self
            .conn
            .prepare("SELECT lane, watermark FROM lanes ORDER BY lane")
            .map_err(self.err())?;
        snap.lanes = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as LaneId,
                    r.get::<_, i64>(1)? as Position,
                ))
            })
            .map_err(self.err())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err())?;
        snap.open_batches = self.batches_where("phase <> 'emitted'")?;
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM batches", [], |r| r.get(0))
            .map_err(self.err())?;
        snap.next_id = max.map_or(1, |m| m as u64 + 1);
        let mut stmt = self
            .conn
            .prepare("SELECT name, committed_len FROM sinks")
            .map_err(self.err())?;
        snap.sinks = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(self.err())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err())?;
        Ok(snap)
    }

    /// The fingerprint stored with a lane's watermark.
    pub fn lane_fingerprint(&self, lane: LaneId) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT fingerprint FROM lanes WHERE lane = ?1",
                [lane as i64],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Every batch, newest first (for `mlpredict status`).
    pub fn all_batches(&self) -> Result<Vec<Batch>> {
        let mut v = self.batches_where("1")?;
        v.reverse();
        Ok(v)
    }

    fn batches_where(&self, cond: &str) -> Result<Vec<Batch>> {
        let sql = format!("SELECT {COLUMNS} FROM batches WHERE {cond} ORDER BY id");
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt.query_map([], raw_row).map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let raw = row.map_err(self.err())?;
            out.push(raw.into_batch().map_err(|(id, what)| StoreError::BadRow {
                path: self.path.clone(),
                id,
                what,
            })?);
        }
        Ok(out)
    }

    /// Start a transaction: several changes made durable with one commit
    /// (one WAL fsync). Dropped without [`Txn::commit`], it rolls back.
    pub fn begin(&mut self) -> Result<Txn<'_>> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction()
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        Ok(Txn { tx, path })
    }

    /// Commit a cut: the new batch (if any), the lane watermark and the
    /// dead-letter sink length, in one transaction.
    /// `fingerprint` identifies the source bytes before the watermark, so
    /// that a source changed under a resumed pipeline is detected.
    pub fn commit_cut(
        &mut self,
        lane: LaneId,
        watermark: Position,
        fingerprint: Option<&str>,
        batch: Option<&Batch>,
        sinks: &[(&str, u64)],
    ) -> Result<()> {
        let tx = self.begin()?;
        if let Some(b) = batch {
            tx.persist(b)?;
        }
        tx.set_watermark(lane, watermark, fingerprint)?;
        tx.set_sinks(sinks)?;
        tx.commit()
    }

    /// Store one batch row (write-ahead for every phase change).
    pub fn persist(&mut self, batch: &Batch) -> Result<()> {
        upsert(&self.conn, batch).map_err(self.err())
    }

    /// Commit an emission: the batch `Emitted`, the new sink lengths and the
    /// retry batch, in one transaction.
    pub fn commit_emit(
        &mut self,
        batch: &Batch,
        emitted_at: Millis,
        sinks: &[(&str, u64)],
        retry: Option<&Batch>,
    ) -> Result<()> {
        let tx = self.begin()?;
        tx.emitted(batch, emitted_at, retry)?;
        tx.set_sinks(sinks)?;
        tx.commit()
    }

    /// Set sink lengths alone (e.g. after truncating at start).
    pub fn set_sinks(&mut self, sinks: &[(&str, u64)]) -> Result<()> {
        set_sinks(&self.conn, sinks).map_err(self.err())
    }
}

/// One transaction of [`Store`] changes; nothing is durable before
/// [`commit`](Self::commit).
pub struct Txn<'s> {
    tx: rusqlite::Transaction<'s>,
    path: &'s Path,
}

impl Txn<'_> {
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.to_owned(),
            source,
        }
    }

    /// Store a batch row; a later row of the same batch replaces it.
    pub fn persist(&self, batch: &Batch) -> Result<()> {
        upsert(&self.tx, batch).map_err(self.err())
    }

    /// The batch `Emitted` at `emitted_at`, and the retry batch it made.
    pub fn emitted(&self, batch: &Batch, emitted_at: Millis, retry: Option<&Batch>) -> Result<()> {
        let mut done = batch.clone();
        done.phase = Phase::Emitted;
        upsert(&self.tx, &done).map_err(self.err())?;
        self.tx
            .prepare_cached("UPDATE batches SET emitted_at = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![batch.id as i64, emitted_at as i64]))
            .map_err(self.err())?;
        if let Some(r) = retry {
            upsert(&self.tx, r).map_err(self.err())?;
        }
        Ok(())
    }

    pub fn set_watermark(
        &self,
        lane: LaneId,
        watermark: Position,
        fingerprint: Option<&str>,
    ) -> Result<()> {
        set_watermark(&self.tx, lane, watermark, fingerprint).map_err(self.err())
    }

    pub fn set_sinks(&self, sinks: &[(&str, u64)]) -> Result<()> {
        set_sinks(&self.tx, sinks).map_err(self.err())
    }

    /// Set `meta` entries (e.g. synchronous mode's `sync.ahead`), in the
    /// same transaction as the watermark they depend on.
    pub fn set_meta(&self, entries: &[(&str, &str)]) -> Result<()> {
        entries
            .iter()
            .try_for_each(|(key, value)| set_meta(&self.tx, key, value))
            .map_err(self.err())
    }

    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tx.commit().map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })
    }
}

const COLUMNS: &str = "id, lane, number, first_pos, end_pos, members, generation, attempt, records, phase, \
    planned_at, submitted_at, file_id, remote_id, remote_state, output_file, error_file, failure_code, failure_message, \
    first_submitted_at, fault_retries, submissions, tokens, estimated_cost";

fn upsert(conn: &Connection, b: &Batch) -> rusqlite::Result<()> {
    let members = b.members.as_ref().map(|m| {
        m.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO batches ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
    ))?
    .execute(params![
        b.id as i64,
        b.lane as i64,
        b.number,
        b.first as i64,
        b.end as i64,
        members,
        b.generation as i64,
        b.attempt as i64,
        b.records as i64,
        b.phase.as_str(),
        b.planned_at as i64,
        b.submitted_at.map(|t| t as i64),
        b.file_id,
        b.remote_id,
        b.remote_state.map(|s| s.as_str()),
        b.output_file,
        b.error_file,
        b.failure.as_ref().map(|f| f.code.as_str()),
        b.failure.as_ref().map(|f| f.message.as_str()),
        b.first_submitted_at.map(|t| t as i64),
        b.fault_retries as i64,
        b.submissions as i64,
        b.tokens as i64,
        b.estimated_cost as i64,
    ])
    .map(drop)
}

fn set_watermark(
    conn: &Connection,
    lane: LaneId,
    watermark: Position,
    fingerprint: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO lanes(lane, watermark, fingerprint) VALUES (?1, ?2, ?3) \
         ON CONFLICT(lane) DO UPDATE SET watermark = ?2, fingerprint = ?3",
    )?
    .execute(params![lane as i64, watermark as i64, fingerprint])
    .map(drop)
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
    )?
    .execute([key, value])
    .map(drop)
}

fn set_sinks(conn: &Connection, sinks: &[(&str, u64)]) -> rusqlite::Result<()> {
    for (name, len) in sinks {
        conn.prepare_cached(
            "INSERT INTO sinks(name, committed_len) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET committed_len = ?2",
        )?
        .execute(params![name, *len as i64])?;
    }
    Ok(())
}

struct RawRow {
    id: i64,
    lane: i64,
    number: String,
    first: i64,
    end: i64,
    members: Option<String>,
    generation: i64,
    attempt: i64,
    records: i64,
    phase: String,
    planned_at: i64,
    submitted_at: Option<i64>,
    file_id: Option<String>,
    remote_id: Option<String>,
    remote_state: Option<String>,
    output_file: Option<String>,
    error_file: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    first_submitted_at: Option<i64>,
    fault_retries: Option<i64>,
    submissions: Option<i64>,
    tokens: Option<i64>,
    estimated_cost: Option<i64>,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        lane: r.get(1)?,
        number: r.get(2)?,
        first: r.get(3)?,
        end: r.get(4)?,
        members: r.get(5)?,
        generation: r.get(6)?,
        attempt: r.get(7)?,
        records: r.get(8)?,
        phase: r.get(9)?,
        planned_at: r.get(10)?,
        submitted_at: r.get(11)?,
        file_id: r.get(12)?,
        remote_id: r.get(13)?,
        remote_state: r.get(14)?,
        output_file: r.get(15)?,
        error_file: r.get(16)?,
        failure_code: r.get(17)?,
        failure_message: r.get(18)?,
        first_submitted_at: r.get(19)?,
        fault_retries: r.get(20)?,
        submissions: r.get(21)?,
        tokens: r.get(22)?,
        estimated_cost: r.get(23)?,
    })
}

impl RawRow {
    fn into_batch(self) -> std::result::Result<Batch, (i64, String)> {
        let id = self.id;
        let bad = |what: &str| (id, what.to_owned());
        let members = match self.members {
            None => None,
            Some(s) if s.is_empty() => Some(Vec::new()),
            Some(s) => Some(
                s.split(',')
                    .map(|p| p.parse::<u64>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| bad("members"))?,
            ),
        };
        let remote_state = match self.remote_state {
            None => None,
            Some(s) => Some(RemoteState::parse(&s).ok_or_else(|| bad("remote_state"))?),
        };
        Ok(Batch {
            id: self.id as u64,
            lane: self.lane as LaneId,
            number: self.number,
            first: self.first as u64,
            end: self.end as u64,
            members,
            generation: self.generation as u32,
            attempt: self.attempt as u32,
            records: self.records as u32,
            phase: Phase::parse(&self.phase).ok_or_else(|| bad("phase"))?,
            planned_at: self.planned_at as u64,
            submitted_at: self.submitted_at.map(|t| t as u64),
            file_id: self.file_id,
            remote_id: self.remote_id,
            remote_state,
            output_file: self.output_file,
            error_file: self.error_file,
            failure: self.failure_code.map(|code| BatchFailure {
                code,
                message: self.failure_message.unwrap_or_default(),
            }),
            first_submitted_at: self.first_submitted_at.map(|t| t as u64),
            fault_retries: self.fault_retries.unwrap_or(0) as u32,
            submissions: self.submissions.unwrap_or(0) as u32,
            tokens: self.tokens.unwrap_or(0) as u64,
            estimated_cost: self.estimated_cost.unwrap_or(0) as u64,
        })
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests;
