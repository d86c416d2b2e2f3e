//! Deterministic execution for the simulation: calls' futures run on a
//! single-threaded executor polled by the simulation (the simulated
//! provider answers at once; only the download permit can wait), and
//! their answers travel a simulated network with virtual delays, so they
//! arrive late, out of order, or never (a crash drops them).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use batch_core::Millis;
use rand::rngs::StdRng;
use rand::Rng;
use runtime::batch::calls::Spawn;
use runtime::Env;

type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

#[derive(Default)]
pub struct Exec {
    tasks: Mutex<Vec<Task>>,
}

impl Spawn for Exec {
    fn spawn(&self, task: Task) {
        self.tasks.lock().unwrap().push(task);
    }
}

impl Exec {
    /// Poll every task until none makes progress.
    pub fn run(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
            if tasks.is_empty() {
                return;
            }
            let before = tasks.len();
            let mut pending = Vec::new();
            for mut t in tasks {
                if t.as_mut().poll(&mut cx).is_pending() {
                    pending.push(t);
                }
            }
            let mut q = self.tasks.lock().unwrap();
            let spawned = !q.is_empty();
            let done = pending.len() < before;
            q.extend(pending);
            if !done && !spawned {
                return;
            }
        }
    }
}

/// One instance's view of time and of its calls' answers.
pub struct SimEnv<A> {
    pub rx: Receiver<(u64, A)>,
    pub clock: Arc<AtomicU64>,
    pub exec: Arc<Exec>,
    pub rng: StdRng,
    /// Answers on their way: (due, sequence, answer).
    net: Vec<(Millis, u64, (u64, A))>,
    seq: u64,
}

impl<A> SimEnv<A> {
    pub fn new(
        rx: Receiver<(u64, A)>,
        clock: Arc<AtomicU64>,
        exec: Arc<Exec>,
        rng: StdRng,
    ) -> Self {
        Self {
            rx,
            clock,
            exec,
            rng,
            net: Vec::new(),
            seq: 0,
        }
    }

    fn pump(&mut self) {
        self.exec.run();
        let now = self.now();
        while let Ok(a) = self.rx.try_recv() {
            let delay = if self.rng.random_bool(0.1) {
                self.rng.random_range(200..3_000)
            } else {
                self.rng.random_range(1..100)
            };
            self.seq += 1;
            self.net.push((now + delay, self.seq, a));
        }
    }

    fn take_due(&mut self, by: Millis) -> Option<(u64, A)> {
        let i = self
            .net
            .iter()
            .enumerate()
            .filter(|(_, (due, _, _))| *due <= by)
            .min_by_key(|(_, (due, seq, _))| (*due, *seq))
            .map(|(i, _)| i)?;
        let (due, _, a) = self.net.swap_remove(i);
        self.clock.fetch_max(due, Ordering::SeqCst);
        Some(a)
    }
}

impl<A> Env<A> for SimEnv<A> {
    fn now(&self) -> Millis {
        self.clock.load(Ordering::SeqCst)
    }

    fn try_answer(&mut self) -> Option<(u64, A)> {
        self.pump();
        let now = self.now();
        self.take_due(now)
    }

    fn wait_answer(&mut self, timeout: Duration) -> Option<(u64, A)> {
        self.pump();
        let until = self.now() + (timeout.as_millis() as u64).max(1);
        let got = self.take_due(until);
        if got.is_none() {
            self.clock.fetch_max(until, Ordering::SeqCst);
        }
        got
    }

    fn stop_requested(&self) -> bool {
        false
    }
}
