//! `${VAR}` substitution, and secrets that never show.

use super::*;

#[test]
fn env_substitution() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"${TEST_API_KEY}\"");
    let c = ok(&text, &[]);
    assert_eq!(c.model.api_key.unwrap().expose(), "sk-from-env-123");
    // inside a longer string, and typed after substitution
    let c = ok(
        MIN,
        &[
            "model.endpoint=http://${TEST_HOST}:8080/v1/chat/completions",
            "ml.batch.size=${TEST_SIZE}",
        ],
    );
    assert_eq!(
        c.model.endpoint,
        "http://127.0.0.1:8080/v1/chat/completions"
    );
    assert_eq!(c.batch.size, 500);
    let c = ok(&min_with("[ml.batch]\nsize = \"${TEST_SIZE}\""), &[]);
    assert_eq!(c.batch.size, 500);
}

#[test]
fn missing_env_var_names_key_and_variable() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"${NO_SUCH_VAR_XYZ}\"");
    let e = assert_err(
        &text,
        &[],
        "model.api-key: environment variable `NO_SUCH_VAR_XYZ` is not set",
    );
    assert_eq!(e.key(), Some("model.api-key"));
}

#[test]
fn env_values_are_never_printed_in_errors() {
    let e = err(MIN, &["ml.batch.size=${TEST_BAD_SIZE}"]);
    let msg = e.to_string();
    assert_eq!(e.key(), Some("ml.batch.size"));
    assert!(!msg.contains("secretish"), "{msg}");
    assert!(msg.contains("${TEST_BAD_SIZE}"), "{msg}");
    // an empty secret from the environment
    assert_err(
        MIN,
        &["model.api-key=${TEST_EMPTY}"],
        "model.api-key: must not be empty",
    );
}

#[test]
fn env_escape_and_malformed_references() {
    let c = ok(MIN, &["model.system-prompt=use $${name} and ${TEST_SIZE}$"]);
    assert_eq!(
        c.model.system_prompt.as_deref(),
        Some("use ${name} and 500$")
    );
    assert_err(
        MIN,
        &["model.system-prompt=oops ${TEST_SIZE"],
        "model.system-prompt: unterminated `${` (write `$${` for a literal `${`)",
    );
    let e = assert_err_key(MIN, &["model.system-prompt=${1BAD}"], "model.system-prompt");
    assert!(e.to_string().contains("`${1BAD}`"));
}

#[test]
fn process_environment_is_used_by_parse_str() {
    // a name no other test uses
    std::env::set_var("PIPELINE_CONFIG_TEST_MODEL_7F3A", "gpt-from-env");
    let c = parse_str(
        &MIN.replace(
            "model = \"m\"",
            "model = \"${PIPELINE_CONFIG_TEST_MODEL_7F3A}\"",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(c.model.model, "gpt-from-env");
}

#[test]
fn secret_is_never_in_debug_or_display() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"sk-very-secret-42\"");
    let c = ok(&text, &[]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("sk-very-secret-42"), "{debug}");
    assert!(debug.contains("***"));
    let s = c.model.api_key.unwrap();
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), "sk-very-secret-42");
    // a wrongly typed secret is not echoed either
    assert_err(
        &text.replace("\"sk-very-secret-42\"", "424242"),
        &[],
        "model.api-key: expected a string",
    );
}

#[test]
fn kafka_credentials_are_redacted_in_debug() {
    let c = ok(KAFKA, &[]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2-kafka"), "{debug}");
    assert!(debug.contains("SASL_SSL"), "{debug}");
    assert!(is_sensitive_property("sasl.password"));
    assert!(is_sensitive_property("ssl.key.password"));
    assert!(is_sensitive_property("sasl.oauthbearer.client.secret"));
    assert!(!is_sensitive_property("security.protocol"));
}

#[test]
fn loading_without_secrets_needs_no_api_key_variable() {
    let text = ACCEPTANCE.replace("\"sk-...\"", "\"${NO_SUCH_VAR_XYZ}\"");
    let no_env = |_: &str| None;
    let c = crate::build::build_with(&text, None, &[], &no_env, crate::Secrets::Skip)
        .unwrap_or_else(|e| panic!("unexpected error: {e}"));
    assert!(c.model.api_key.is_none());
    // The rest is read as usual, -D included.
    let c = crate::build::build_with(
        &text,
        None,
        &["ml.batch.size=7".into()],
        &no_env,
        crate::Secrets::Skip,
    )
    .unwrap();
    assert_eq!(c.batch.size, 7);
    // Resolving still needs it.
    let e =
        crate::build::build_with(&text, None, &[], &no_env, crate::Secrets::Resolve).unwrap_err();
    assert_eq!(e.key(), Some("model.api-key"));
}
