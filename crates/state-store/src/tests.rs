use super::*;

fn batch(id: u64) -> Batch {
    Batch {
        id,
        lane: 0,
        number: format!("p-0-{id}-{}", id + 10),
        first: id,
        end: id + 10,
        members: None,
        generation: 0,
        attempt: 0,
        records: 10,
        phase: Phase::Planned,
        planned_at: 1000,
        submitted_at: None,
        file_id: None,
        remote_id: None,
        remote_state: None,
        output_file: None,
        error_file: None,
        failure: None,
        first_submitted_at: None,
        fault_retries: 0,
        submissions: 0,
        tokens: 0,
        estimated_cost: 0,
    }
}

#[test]
fn batches_round_trip_through_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("p")).unwrap();
    let mut b = batch(1);
    store
        .commit_cut(0, 11, Some("fp"), Some(&b), &[("dlq", 5)])
        .unwrap();
    b.phase = Phase::Uploaded;
    b.file_id = Some("file-1".into());
    store.persist(&b).unwrap();
    b.phase = Phase::Finished;
    b.first_submitted_at = Some(1500);
    b.fault_retries = 2;
    b.submissions = 3;
    b.remote_id = Some("batch_1".into());
    b.remote_state = Some(RemoteState::Expired);
    b.failure = Some(BatchFailure {
        code: "c".into(),
        message: "m".into(),
    });
    store.persist(&b).unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("p")).unwrap();
    let snap = store.load().unwrap();
    assert_eq!(snap.open_batches, vec![b]);
    assert_eq!(snap.lanes, vec![(0, 11)]);
    assert_eq!(snap.next_id, 2);
    assert_eq!(snap.sinks.get("dlq"), Some(&5));
    assert_eq!(store.lane_fingerprint(0).unwrap().as_deref(), Some("fp"));
}

#[test]
fn emission_commits_batch_sinks_and_retry_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let b = batch(1);
    store.commit_cut(0, 11, None, Some(&b), &[]).unwrap();
    let mut retry = batch(2);
    retry.members = Some(vec![3, 7]);
    retry.generation = 1;
    store
        .commit_emit(&b, 5000, &[("output", 1234), ("dlq", 0)], Some(&retry))
        .unwrap();
    let snap = store.load().unwrap();
    assert_eq!(snap.open_batches, vec![retry]);
    assert_eq!(snap.sinks.get("output"), Some(&1234));
    assert_eq!(snap.next_id, 3);
    let all = store.all_batches().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].phase, Phase::Emitted);
}

#[test]
fn directory_is_private_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state");
    let store = Store::open(&p).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    store.set_meta("schema_version", "99").unwrap();
    drop(store);
    let err = Store::open(&p).err().expect("refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn empty_member_lists_survive() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut b = batch(4);
    b.members = Some(vec![]);
    store.persist(&b).unwrap();
    assert_eq!(store.load().unwrap().open_batches[0].members, Some(vec![]));
}

#[test]
fn a_txn_commits_everything_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (mut a, b) = (batch(1), batch(2));
    // Dropped without commit: nothing is stored.
    let tx = store.begin().unwrap();
    tx.persist(&a).unwrap();
    tx.set_watermark(0, 20, Some("fp")).unwrap();
    drop(tx);
    let snap = store.load().unwrap();
    assert!(snap.open_batches.is_empty());
    assert!(snap.lanes.is_empty());
    // Two cuts, a later row of the same batch, an emission: one commit.
    let tx = store.begin().unwrap();
    tx.persist(&a).unwrap();
    tx.persist(&b).unwrap();
    a.phase = Phase::Uploaded;
    a.file_id = Some("file-1".into());
    tx.persist(&a).unwrap();
    tx.set_watermark(0, 20, Some("fp")).unwrap();
    tx.emitted(&b, 7000, None).unwrap();
    tx.set_sinks(&[("output", 99), ("dlq", 3)]).unwrap();
    tx.commit().unwrap();
    let snap = store.load().unwrap();
    assert_eq!(snap.open_batches, vec![a]);
    assert_eq!(snap.lanes, vec![(0, 20)]);
    assert_eq!(snap.sinks.get("output"), Some(&99));
    assert_eq!(snap.sinks.get("dlq"), Some(&3));
    assert_eq!(store.all_batches().unwrap()[0].phase, Phase::Emitted);
}

#[test]
fn watermark_sinks_and_meta_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let progress = |store: &mut Store, watermark, ahead: &str, commit: bool| {
        let tx = store.begin().unwrap();
        tx.set_watermark(0, watermark, Some("fp")).unwrap();
        tx.set_sinks(&[("output", watermark * 2)]).unwrap();
        tx.set_meta(&[("sync.ahead", ahead)]).unwrap();
        if commit {
            tx.commit().unwrap();
        }
    };
    progress(&mut store, 100, "100:120", true);
    // Dropped before its commit: none of it is kept.
    progress(&mut store, 200, "200:", false);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let snap = store.load().unwrap();
    assert_eq!(snap.lanes, vec![(0, 100)]);
    assert_eq!(snap.sinks.get("output"), Some(&200));
    assert_eq!(
        store.meta("sync.ahead").unwrap().as_deref(),
        Some("100:120")
    );
    assert_eq!(store.lane_fingerprint(0).unwrap().as_deref(), Some("fp"));
}

#[test]
fn a_database_from_before_the_retry_columns_is_read_and_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old");
    std::fs::create_dir_all(&p).unwrap();
    {
        // The version 1 schema as first shipped, with one submitted batch.
        let conn = Connection::open(p.join("state.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE batches (id INTEGER PRIMARY KEY, lane INTEGER NOT NULL, number TEXT NOT NULL,
                first_pos INTEGER NOT NULL, end_pos INTEGER NOT NULL, members TEXT, generation INTEGER NOT NULL,
                attempt INTEGER NOT NULL, records INTEGER NOT NULL, phase TEXT NOT NULL, planned_at INTEGER NOT NULL,
                submitted_at INTEGER, file_id TEXT, remote_id TEXT, remote_state TEXT, output_file TEXT,
                error_file TEXT, failure_code TEXT, failure_message TEXT, emitted_at INTEGER);
             INSERT INTO batches (id, lane, number, first_pos, end_pos, generation, attempt, records, phase,
                planned_at, submitted_at, remote_id)
                VALUES (1, 0, 'p-0-0-10', 0, 10, 1, 0, 10, 'submitted', 1000, 2000, 'batch_1');",
        )
        .unwrap();
    }
    let mut store = Store::open(&p).unwrap();
    let snap = store.load().unwrap();
    let mut b = snap.open_batches[0].clone();
    assert_eq!(
        (b.first_submitted_at, b.fault_retries, b.submissions),
        (None, 0, 0)
    );
    assert_eq!(b.tried_since(), 2000);
    b.first_submitted_at = Some(1500);
    store.persist(&b).unwrap();
    drop(store);
    let store = Store::open(&p).unwrap();
    assert_eq!(store.load().unwrap().open_batches, vec![b]);
}
