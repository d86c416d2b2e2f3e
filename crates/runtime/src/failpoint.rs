//! Crash points for tests: `MLPREDICT_FAILPOINT=<name>` makes the process
//! abort (as kill -9 would) the first time it reaches that point. Names:
//! `after-create` (a batch exists at the provider, its id not yet recorded),
//! `before-emit-commit` (output appended and synced, commit not yet made),
//! `after-cut` (batch file sealed, cut not yet committed),
//! `sync-before-commit` (synchronous mode: output appended and synced,
//! commit not yet made). Hand-rolled rather than the `fail` crate: four
//! points, one env var.

use std::sync::OnceLock;

pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("MLPREDICT_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if armed.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
