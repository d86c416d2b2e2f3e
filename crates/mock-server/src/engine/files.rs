//! Uploaded and produced files, in memory.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;

use crate::util::{unix_now, IdGen};

/// Files expire 30 days after creation unless told otherwise.
pub(crate) const FILE_TTL_SECS: i64 = 30 * 24 * 3600;

/// The File object, with every field the SDK knows.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
    pub status_details: Option<String>,
}

pub(crate) struct FileEntry {
    pub obj: FileObject,
    pub bytes: Bytes,
}

#[derive(Default)]
pub(crate) struct FileTable {
    pub map: HashMap<String, FileEntry>,
    /// Creation order (deleted ids removed).
    pub order: Vec<String>,
    seq: u64,
}

impl FileTable {
    pub(crate) fn add(
        &mut self,
        ids: &IdGen,
        filename: String,
        purpose: &str,
        bytes: Bytes,
        ttl_secs: Option<i64>,
    ) -> FileObject {
        self.seq += 1;
        let id = ids.base62("file-", self.seq);
        let created_at = unix_now();
        let obj = FileObject {
            id: id.clone(),
            object: "file",
            bytes: bytes.len() as u64,
            created_at,
            filename,
            purpose: purpose.to_owned(),
            status: "processed",
            expires_at: Some(created_at + ttl_secs.unwrap_or(FILE_TTL_SECS)),
            status_details: None,
        };
        self.map.insert(
            id.clone(),
            FileEntry {
                obj: obj.clone(),
                bytes,
            },
        );
        self.order.push(id);
        obj
    }

    pub(crate) fn remove(&mut self, id: &str) -> bool {
        if self.map.remove(id).is_none() {
            return false;
        }
        self.order.retain(|x| x != id);
        true
    }
}
