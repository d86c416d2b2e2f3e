//! Mock server configurations of the end-to-end tests.

use std::time::Duration;

use mock_server::MockConfig;

/// A mock on a free port whose batches take `in_progress_ms` (validating and
/// finalizing 20 ms each).
pub fn batch_mock(in_progress_ms: u64) -> MockConfig {
    MockConfig {
        port: 0,
        validating: Duration::from_millis(20),
        in_progress: Duration::from_millis(in_progress_ms),
        finalizing: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

/// The faults of the kill -9 loops: some of every kind, retry-after 20 ms.
pub fn chaos_faults(cfg: &mut MockConfig) {
    cfg.retry_after = Duration::from_millis(20);
    let f = &mut cfg.faults;
    f.rate_limit_fraction = 0.05;
    f.server_error_fraction = 0.03;
    f.lost_response_fraction = 0.2;
    f.token_limit_fraction = 0.1;
    f.expire_fraction = 0.1;
    f.request_4xx_fraction = 0.02;
    f.request_5xx_fraction = 0.05;
}

/// Every fault on, often, retry-after 20 ms: slow finalizing and an empty
/// `error_file_id` too.
pub fn every_fault(cfg: &mut MockConfig) {
    cfg.retry_after = Duration::from_millis(20);
    let f = &mut cfg.faults;
    f.rate_limit_fraction = 0.1;
    f.server_error_fraction = 0.05;
    f.lost_response_fraction = 0.3;
    f.token_limit_fraction = 0.2;
    f.expire_fraction = 0.2;
    f.request_4xx_fraction = 0.05;
    f.request_5xx_fraction = 0.1;
    f.slow_finalizing = Duration::from_millis(100);
    f.empty_error_file_id = true;
}
