//! Which Kafka instance this process is: an id that a restart reuses, and
//! the local directory that goes with it.
//!
//! The id names the instance's transactional producer (`transactional.id`)
//! and its static group membership (`group.instance.id`), so a restart
//! fences at once what the killed process left open (instead of blocking
//! `read_committed` readers for `transaction.timeout.ms`) and gets its
//! partitions back without a rebalance. Two live processes must never share
//! an id: they would fence each other. So every id is held with an
//! exclusive lock (flock) on `local.dir/<pipeline>/instance-<x>/.lock`:
//!
//! - `--instance-id ID` (or MLPREDICT_INSTANCE_ID): `instance-ID/`, refused
//!   while another process on this machine holds it;
//! - by default `{hostname}-{dir}-{N}`, `instance-N/` being the lowest slot
//!   no live process holds, `{dir}` a short hash of the local directory (two
//!   pipelines on one machine with different `ml.batch.local.dir`s have
//!   slots of their own and must not share ids). A restart after kill -9
//!   takes the freed slot, so it gets the same id and the same directory.
//!
//! The lock dies with the process; the directory stays and is reused (its
//! files, a cache rebuilt from Kafka, are removed when it is taken).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

const LOCK: &str = ".lock";

/// Longest id accepted: Kafka's ids and topic-like names stay under 249.
const MAX_ID: usize = 200;

/// This process's instance: held for as long as the value lives.
pub struct Instance {
    pub id: String,
    /// Local files of this instance (batch files).
    pub dir: PathBuf,
    _lock: File,
}

impl Instance {
    /// Take `explicit`, or the lowest free slot, under `base`
    /// (`local.dir/<pipeline>`), and empty its directory.
    pub fn claim(base: &Path, explicit: Option<&str>) -> anyhow::Result<Self> {
        let inst = match explicit {
            Some(id) => {
                check_id(id)?;
                let dir = base.join(format!("instance-{id}"));
                let Some(lock) = try_lock(&dir)? else {
                    bail!(
                        "--instance-id {id} is in use by another process on this machine (it holds {}); give each instance its own id",
                        dir.join(LOCK).display()
                    );
                };
                Self {
                    id: id.to_owned(),
                    dir,
                    _lock: lock,
                }
            }
            None => {
                let host = hostname();
                let dir_tag = dir_tag(base)?;
                let mut slot = 0u32;
                loop {
                    let dir = base.join(format!("instance-{slot}"));
                    if let Some(lock) = try_lock(&dir)? {
                        break Self {
                            id: format!("{host}-{dir_tag}-{slot}"),
                            dir,
                            _lock: lock,
                        };
                    }
                    slot += 1;
                }
            }
        };
        inst.clear()?;
        tracing::info!(instance = %inst.id, dir = %inst.dir.display(), "instance id taken");
        Ok(inst)
    }

    /// Remove every file of the directory but the lock.
    pub fn clear(&self) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        for e in entries {
            let e = e?;
            if e.file_name() == LOCK {
                continue;
            }
            let path = e.path();
            let r = if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

/// A character Kafka allows in a `group.instance.id`.
fn legal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > MAX_ID || !id.chars().all(legal) {
        bail!(
            "--instance-id `{id}`: use 1 to {MAX_ID} characters of a-z, A-Z, 0-9, `.`, `_` and `-`"
        );
    }
    Ok(())
}

/// The lock of `dir`, if no other process holds it.
fn try_lock(dir: &Path) -> anyhow::Result<Option<File>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; the lock is released when the
    // file (or the process) is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(e).with_context(|| format!("cannot lock {}", path.display()))
}

/// The machine's name, in the characters an id may hold.
/// 8 hex digits naming the local directory, stable across restarts.
fn dir_tag(base: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
    let path = base
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", base.display()))?;
    let hash = xxhash_rust::xxh3::xxh3_64(path.as_os_str().as_encoded_bytes());
    Ok(format!("{:08x}", hash >> 32))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let raw = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name: String = raw
        .chars()
        .map(|c| if legal(c) { c } else { '_' })
        .take(MAX_ID - 12)
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_reused_once_freed() {
        let base = tempfile::tempdir().unwrap();
        let a = Instance::claim(base.path(), None).unwrap();
        let b = Instance::claim(base.path(), None).unwrap();
        assert!(
            a.id.ends_with("-0") && b.id.ends_with("-1"),
            "{} {}",
            a.id,
            b.id
        );
        assert_ne!(a.dir, b.dir);
        std::fs::write(a.dir.join("batch-1.jsonl"), "stale").unwrap();
        std::fs::create_dir(a.dir.join("sub")).unwrap();
        drop(a); // a kill -9: the lock goes with the process
        let again = Instance::claim(base.path(), None).unwrap();
        assert!(again.id.ends_with("-0"), "{}", again.id);
        let left: Vec<_> = std::fs::read_dir(&again.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![LOCK], "stale files removed");
    }

    #[test]
    fn pipelines_with_other_local_dirs_never_share_an_id() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Instance::claim(one.path(), None).unwrap();
        let b = Instance::claim(two.path(), None).unwrap();
        assert_ne!(a.id, b.id, "both slot 0, but of other directories");
        let a_id = a.id.clone();
        drop(a);
        assert_eq!(
            Instance::claim(one.path(), None).unwrap().id,
            a_id,
            "stable"
        );
    }

    #[test]
    fn an_explicit_id_is_exclusive_and_checked() {
        let base = tempfile::tempdir().unwrap();
        let a = Instance::claim(base.path(), Some("pod-3")).unwrap();
        assert_eq!(a.id, "pod-3");
        let e = Instance::claim(base.path(), Some("pod-3")).err().unwrap();
        assert!(
            format!("{e:#}").contains("in use by another process"),
            "{e:#}"
        );
        let e = Instance::claim(base.path(), Some("a b")).err().unwrap();
        assert!(format!("{e:#}").contains("--instance-id"), "{e:#}");
    }
}
