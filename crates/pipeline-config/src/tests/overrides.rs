//! `-D key=value` overrides.

use std::time::Duration;

use super::*;

#[test]
fn override_without_equals_is_rejected() {
    assert_err(
        MIN,
        &["foo"],
        "-D override `foo` is not of the form key=value",
    );
    assert!(matches!(err(MIN, &["=5"]), ConfigError::BadOverride(_)));
    assert!(matches!(err(MIN, &["a b=5"]), ConfigError::BadOverride(_)));
    assert!(matches!(
        err(MIN, &["ml..batch=5"]),
        ConfigError::BadOverride(_)
    ));
}

#[test]
fn overrides_are_typed_like_toml_scalars() {
    let c = ok(
        ACCEPTANCE,
        &[
            "ml.batch.size=500",
            "ml.batch.enabled=false",
            "model.temperature=0.5",
            "ml.batch.poll.interval=1s",
            "pipeline.name=nightly",
        ],
    );
    assert_eq!(c.batch.size, 500);
    assert!(!c.batch.enabled);
    assert_eq!(c.model.temperature, Some(0.5));
    assert_eq!(c.batch.poll_interval, Duration::from_secs(1));
    assert_eq!(c.name, "nightly");
}

#[test]
fn override_numbers_still_work_for_string_keys() {
    let c = ok(
        MIN,
        &["model.model=1234", "model.input=1.50", "pipeline.name=2024"],
    );
    assert_eq!(c.model.model, "1234");
    assert_eq!(c.model.input, "1.50");
    assert_eq!(c.name, "2024");
}

#[test]
fn later_override_wins_and_value_may_contain_equals() {
    let c = ok(
        MIN,
        &[
            "ml.batch.size=5",
            "ml.batch.size=6",
            "model.system-prompt=answer with a=b",
        ],
    );
    assert_eq!(c.batch.size, 6);
    assert_eq!(c.model.system_prompt.as_deref(), Some("answer with a=b"));
}

#[test]
fn override_of_a_bad_value_names_the_key() {
    assert_err(
        MIN,
        &["ml.batch.size=abc"],
        "ml.batch.size: expected a positive integer, got \"abc\"",
    );
}

#[test]
fn override_can_switch_batch_mode_on() {
    let c = ok(MIN, &["batch=true", "ml.batch.api.endpoint=http://h/v1/"]);
    assert!(c.batch.enabled);
    assert_eq!(c.batch.api_endpoint.as_deref(), Some("http://h/v1"));
}
