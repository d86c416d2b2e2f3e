//! Synchronous requests, run on the async runtime; each answer comes back
//! to the driver's channel tagged with the epoch it was sent in.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use batch_api::sync::{Client, Done, Job};
use tokio::sync::watch;

use crate::batch::calls::Spawn;

/// The synchronous endpoint as the operator sees it: one record's request,
/// retried inside, and its answer. The provider's client in a pipeline, a
/// simulated endpoint in the simulation.
pub trait SyncEndpoint: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        job: Job,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Done> + Send>>;

    /// `(calls made, calls failed)`, retries included.
    fn counts(&self) -> (u64, u64);
}

impl SyncEndpoint for Client {
    fn call(
        self: Arc<Self>,
        job: Job,
        stop: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = Done> + Send>> {
        Box::pin(Client::call(self, job, stop))
    }

    fn counts(&self) -> (u64, u64) {
        (self.calls.load(Relaxed), self.failed_calls.load(Relaxed))
    }
}

pub struct SyncCaller {
    pub client: Arc<dyn SyncEndpoint>,
    rt: Arc<dyn Spawn>,
    tx: Sender<(u64, Done)>,
    epoch: u64,
    /// Set: the requests of this epoch stop (those waiting to be sent or
    /// in backoff answer `Dropped`; one already sent finishes).
    stop: watch::Sender<bool>,
}

impl SyncCaller {
    pub fn new(client: Arc<dyn SyncEndpoint>, rt: Arc<dyn Spawn>, tx: Sender<(u64, Done)>) -> Self {
        Self {
            client,
            rt,
            tx,
            epoch: 0,
            stop: watch::channel(false).0,
        }
    }

    pub fn send(&self, job: Job) {
        let (client, stop, tx, epoch) = (
            self.client.clone(),
            self.stop.subscribe(),
            self.tx.clone(),
            self.epoch,
        );
        self.rt.spawn(Box::pin(async move {
            let _ = tx.send((epoch, client.call(job, stop).await));
        }));
    }

    /// Stop every request sent so far.
    pub fn halt(&self) {
        self.stop.send_replace(true);
    }

    /// Stop the requests of the old epoch; send the next ones in `epoch`.
    pub fn restart(&mut self, epoch: u64) {
        self.halt();
        self.stop = watch::channel(false).0;
        self.epoch = epoch;
    }
}
