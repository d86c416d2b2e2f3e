//! The messages a newcomer meets first: each names the key, the path or the
//! `-D` argument it is about, once.

use std::path::Path;

use super::*;

#[test]
fn a_missing_file_gives_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = load(&missing, &[]).unwrap_err();
    let chained = format!("{:#}", ErrorChain(&e));
    assert_eq!(chained.matches("os error 2").count(), 1, "{chained}");
    assert!(chained.contains("nope.toml"), "{chained}");
    assert_eq!(e.origin(&missing, &[]), None, "the message has the path");
}

/// `{:#}` of an `anyhow` error: the message and each `source()`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[test]
fn errors_in_overrides_are_blamed_on_the_override() {
    let file = Path::new("base.toml");
    let overrides = ["ml.batch.sizee=5".to_string()];
    let e = err(MIN, &["ml.batch.sizee=5"]);
    assert_eq!(
        e.origin(file, &overrides).as_deref(),
        Some("in -D ml.batch.sizee")
    );
    // a secret given by -D is not shown
    let overrides = ["model.api-key=${NOT_SET_ANYWHERE}".to_string()];
    let e = err(MIN, &["model.api-key=${NOT_SET_ANYWHERE}"]);
    assert_eq!(
        e.origin(file, &overrides).as_deref(),
        Some("in -D model.api-key")
    );
    // an error in the file stays the file's, -D or not
    let text = min_with("[ml.batch]\nsize = 0");
    let overrides = ["ml.batch.max.wait=1s".to_string()];
    let e = err(&text, &["ml.batch.max.wait=1s"]);
    assert_eq!(e.origin(file, &overrides).as_deref(), Some("in base.toml"));
}

#[test]
fn an_out_of_range_integer_names_the_key() {
    let text = min_with("[ml.batch]\nsize = 99999999999999999999");
    let e = err(&text, &[]);
    assert_eq!(e.key(), Some("ml.batch.size"));
    let msg = e.to_string();
    assert!(msg.contains("(key `ml.batch.size`)"), "{msg}");
    assert!(
        msg.contains("99999999999999999999") && msg.contains("is out of range"),
        "{msg}"
    );
    assert!(!msg.contains("i128"), "{msg}");
    // the file's syntax, even when a -D sets the same key
    let overrides = ["ml.batch.size=5".to_string()];
    let e = err(&text, &["ml.batch.size=5"]);
    assert_eq!(
        e.origin(Path::new("base.toml"), &overrides).as_deref(),
        Some("in base.toml")
    );
}

#[test]
fn a_duplicate_key_is_named() {
    let text = "[source]\ntype = \"file\"\n type = \"kafka\"\n";
    let e = err(text, &[]);
    assert_eq!(e.key(), Some("source.type"), "{e}");
    let text = "[model]\n\"api-key\" = \"sk-secret-1\"\napi-key = \"sk-secret-2\"\n";
    let msg = err(text, &[]).to_string();
    assert!(msg.contains("(key `model.api-key`)"), "{msg}");
    assert!(!msg.contains("sk-secret"), "{msg}");
    // a table given twice
    let text = "[sink]\ntype = \"file\"\n[sink]\npath = \"x\"\n";
    assert_eq!(err(text, &[]).key(), Some("sink"));
}

#[test]
fn a_fraction_of_a_byte_is_refused() {
    for bad in ["1.5", "0.5B", "1.5 b"] {
        let e = err(MIN, &[&format!("ml.batch.max.bytes={bad}")]);
        assert_eq!(e.key(), Some("ml.batch.max.bytes"), "{bad}");
        assert!(e.to_string().contains("whole bytes"), "{e}");
    }
    let text = min_with("[ml.batch]\nmax.bytes = \"1.5\"");
    assert_err_key(&text, &[], "ml.batch.max.bytes");
    let c = ok(MIN, &["ml.batch.max.bytes=1.5MiB"]);
    assert_eq!(c.batch.max_bytes, 1_572_864);
}

#[test]
fn a_directory_as_a_file_path_names_the_key_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    for key in ["source.path", "sink.path", "sink.dlq.path"] {
        let e = err(MIN, &[&format!("{key}={d}")]);
        assert_eq!(e.key(), Some(key));
        let msg = e.to_string();
        assert!(msg.contains(&d) && msg.contains("is a directory"), "{msg}");
    }
}
