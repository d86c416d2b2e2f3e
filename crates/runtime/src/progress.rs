//! A progress bar on a terminal (indicatif), plain log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::Summary;

/// Without a terminal, a progress line at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl Progress {
    pub fn new(on_terminal: bool) -> Self {
        let bar = on_terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            last_log: Instant::now(),
        }
    }

    /// Whether [`update`](Self::update) would show anything now: the
    /// summary it needs is only built then.
    pub fn due(&self) -> bool {
        self.bar.is_some() || self.last_log.elapsed() >= LOG_EVERY
    }

    pub fn update(&mut self, s: &Summary, inflight: usize, queued: usize) {
        let msg = format!(
            "read {} · emitted {} ok, {} errors · {} dead letters · batches: {} in flight, {} queued",
            s.records_read, s.ok, s.errors, s.dead_letters, inflight, queued
        );
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                tracing::info!("{msg}");
            }
            None => {}
        }
    }

    pub fn finish(&mut self, _s: &Summary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
