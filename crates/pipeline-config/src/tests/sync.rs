//! `[ml.predict]` (synchronous mode), `[metrics]` and `[ui]`.

use std::time::Duration;

use super::*;

#[test]
fn sync_options() {
    let c = ok(
        MIN,
        &[
            "ml.predict.output-mode=allow_unordered",
            "ml.predict.max-concurrent-operations=64",
            "ml.predict.timeout=5s",
            "ml.predict.request-timeout=2s",
            "ml.predict.max-retries=0",
        ],
    );
    assert_eq!(c.sync.request_timeout, Duration::from_secs(2));
    assert_eq!(c.sync.output_mode, OutputMode::AllowUnordered);
    assert_eq!(c.sync.max_concurrent_operations, 64);
    assert_eq!(c.sync.timeout, Duration::from_secs(5));
    assert_eq!(c.sync.max_retries, 0);
    assert_err(
        MIN,
        &["ml.predict.output-mode=RANDOM"],
        "ml.predict.output-mode: expected one of \"ORDERED\", \"ALLOW_UNORDERED\", got \"RANDOM\"",
    );
    assert_err_key(
        MIN,
        &["ml.predict.max-concurrent-operations=0"],
        "ml.predict.max-concurrent-operations",
    );
}

#[test]
fn metrics_options() {
    let c = ok(&min_with("[metrics]\nport = 9464\nbind = \"::1\""), &[]);
    assert_eq!(c.metrics.port, Some(9464));
    assert_eq!(c.metrics.bind, "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(ok(MIN, &["metrics.port=0"]).metrics.port, Some(0));
    assert_err(
        MIN,
        &["metrics.port=70000"],
        "metrics.port: must be between 0 and 65535, got 70000",
    );
    assert_err(
        MIN,
        &["metrics.bind=localhost"],
        "metrics.bind: expected an IP address such as 127.0.0.1 or ::1, got \"localhost\"",
    );
}

#[test]
fn ui_options() {
    let c = ok(MIN, &[]);
    assert_eq!(c.ui.port, None);
    assert_eq!(c.ui.bind, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    let c = ok(&min_with("[ui]\nport = 8080\nbind = \"0.0.0.0\""), &[]);
    assert_eq!(c.ui.port, Some(8080));
    assert_eq!(c.ui.bind, "0.0.0.0".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(c.metrics.port, None, "ui keys are their own");
    assert_err(
        MIN,
        &["ui.port=65536"],
        "ui.port: must be between 0 and 65535, got 65536",
    );
    assert_err(
        MIN,
        &["ui.bind=all"],
        "ui.bind: expected an IP address such as 127.0.0.1 or ::1, got \"all\"",
    );
}
