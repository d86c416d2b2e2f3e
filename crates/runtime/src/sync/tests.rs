//! The operator's own rules: group commit and restored records.

use super::*;
use crate::batch::calls::Spawn;
use batch_api::sync::{Auth, Client, Settings};
use batch_api::wire::{Task, WireFormat};
use std::sync::Arc;

/// No request may go out in these tests.
struct NoSpawn;

impl Spawn for NoSpawn {
    fn spawn(&self, _: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        panic!("no request expected");
    }
}

fn operator() -> SyncOperator {
    let (format, task) = (WireFormat::OpenAi, Task::Chat);
    let client = Client::new(&Settings {
        endpoint: "http://127.0.0.1:9/v1/chat/completions",
        api_key: None,
        auth: Auth::Bearer,
        pipeline: "p",
        output_field: "prediction",
        task,
        format,
        timeout: std::time::Duration::from_secs(1),
        request_timeout: std::time::Duration::from_secs(1),
        max_retries: 0,
        max_concurrent: 2,
        observer: None,
    })
    .unwrap();
    let settings = SyncSettings {
        pipeline: "p".into(),
        ordered: true,
        limits: Limits::new(2, true, false),
        template: RequestTemplate::new(format, task, "/v1/chat/completions", "m", None, None, None),
        input_field: "text".into(),
        output_field: "prediction".into(),
    };
    let tx = std::sync::mpsc::channel().0;
    SyncOperator::new(
        settings,
        SyncCaller::new(Arc::new(client), Arc::new(NoSpawn), tx),
    )
}

fn lane(meta: Option<&str>) -> LaneState {
    LaneState {
        lane: 0,
        watermark: 10,
        next_seq: 4,
        meta: meta
            .map(|m| BTreeMap::from([(SYNC_AHEAD.to_owned(), m.to_owned())]))
            .unwrap_or_default(),
        ..LaneState::default()
    }
}

fn record(pos: u64, value: &[u8]) -> Record<'_> {
    Record {
        lane: 0,
        pos,
        next: pos + 10,
        kind: RecordKind::Line {
            line_no: pos / 10 + 1,
        },
        key: None,
        value: Some(value),
    }
}

struct None_;
impl BatchRecords for None_ {
    fn visit(
        &mut self,
        _: &batch_core::Batch,
        _: &mut crate::ledger::VisitRecord<'_>,
    ) -> anyhow::Result<()> {
        unreachable!()
    }
}

#[test]
fn emitted_lines_wait_for_the_commit_interval_or_the_end() {
    let mut op = operator();
    op.open(vec![lane(Some("10:20"))], 1, 1000).unwrap();
    let mut turn = Turn::default();
    op.on_record(record(10, b"not json"), &mut turn, 1000)
        .unwrap();
    op.on_record(record(20, b"{\"text\":\"skipped\"}"), &mut turn, 1000)
        .unwrap();
    op.tick(&mut turn, &mut None_, 1100).unwrap();
    assert!(turn.is_empty(), "held until the interval");
    assert_eq!(op.next_wake(), Some(1000 + COMMIT_INTERVAL_MS));
    op.tick(&mut turn, &mut None_, 1000 + COMMIT_INTERVAL_MS)
        .unwrap();
    assert_eq!(turn.dead_letters.len(), 1);
    assert_eq!(
        turn.lanes[&0],
        LaneMark {
            watermark: 30,
            next_seq: 4
        }
    );
    assert_eq!(turn.meta[&(0, SYNC_AHEAD)], "30:");
    assert_eq!(op.counts.skipped, 1);
    assert!(op.is_idle());
    // At the end, what is held goes at once.
    let mut turn = Turn::default();
    op.on_record(record(30, b"[1]"), &mut turn, 1300).unwrap();
    op.on_end(0, &mut turn, 1300).unwrap();
    op.tick(&mut turn, &mut None_, 1301).unwrap();
    assert_eq!(turn.dead_letters.len(), 1);
    assert_eq!(turn.lanes[&0].watermark, 40);
}
