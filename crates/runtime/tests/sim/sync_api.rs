//! A simulated synchronous endpoint behind the operator's `SyncEndpoint`
//! seam: each request is answered ok, or with a permanent error, or (the
//! pipeline stopping) dropped; answers then travel the simulated network.
//! Sync mode may send a record again after a crash (what was in flight or
//! answered after the last commit), so the books count answers but do not
//! require them to be unique; outputs must still be exactly once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use batch_api::sync::{Answer, Done, Job};
use batch_core::{LaneId, Position};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use runtime::sync::SyncEndpoint;
use tokio::sync::watch;

pub struct SimSync {
    rng: Mutex<StdRng>,
    error_rate: f64,
    pub answered: Mutex<BTreeMap<(LaneId, Position), u32>>,
    calls: Mutex<u64>,
}

impl SimSync {
    pub fn new(seed: u64, error_rate: f64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5_1C)),
            error_rate,
            answered: Mutex::default(),
            calls: Mutex::new(0),
        }
    }

    /// The output line the provider's client writes: the record, the
    /// prediction, the metadata.
    fn line(job: &Job, ok: bool) -> Vec<u8> {
        let mut v: serde_json::Value =
            serde_json::from_slice(&job.record).expect("a usable record");
        let cid = format!("{}-{}", job.lane, job.pos);
        let o = v.as_object_mut().expect("an object");
        o.insert(
            "prediction".into(),
            if ok {
                format!("answer {cid}").into()
            } else {
                serde_json::Value::Null
            },
        );
        o.insert(
            "ml_predict".into(),
            serde_json::json!({
                "batch_number": null, "batch_id": null, "retries": 0, "custom_id": cid,
                "status": if ok { "ok" } else { "error" },
                "error": if ok { serde_json::Value::Null } else { serde_json::json!({"code": "invalid_request", "message": "simulated 400"}) },
            }),
        );
        let mut line = serde_json::to_vec(&v).unwrap();
        line.push(b'\n');
        line
    }
}

impl SyncEndpoint for SimSync {
    fn call(
        self: Arc<Self>,
        job: Job,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Done> + Send>> {
        let answer = if *stop.borrow() {
            Answer::Dropped
        } else {
            *self.calls.lock().unwrap() += 1;
            let ok = !self.rng.lock().unwrap().random_bool(self.error_rate);
            if ok {
                *self
                    .answered
                    .lock()
                    .unwrap()
                    .entry((job.lane, job.pos))
                    .or_default() += 1;
            }
            Answer::Emit {
                line: Self::line(&job, ok),
                ok,
                tokens: 3,
                retries: 0,
            }
        };
        let done = Done {
            seq: job.seq,
            lane: job.lane,
            key: job.key,
            answer,
        };
        Box::pin(std::future::ready(done))
    }

    fn counts(&self) -> (u64, u64) {
        (*self.calls.lock().unwrap(), 0)
    }
}
