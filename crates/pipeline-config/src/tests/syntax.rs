//! TOML syntax errors: line, column, path, nothing echoed.

use super::*;

#[test]
fn syntax_errors_report_line_and_column() {
    let text = "[pipeline]\nname = \"x\"\nthis is not toml\n";
    match err(text, &[]) {
        ConfigError::Syntax {
            line, column, path, ..
        } => {
            assert_eq!(line, 3);
            assert!(column >= 1);
            assert_eq!(path, None);
        }
        other => panic!("{other:?}"),
    }
    let msg = err(text, &[]).to_string();
    assert!(msg.starts_with("syntax error at line 3, column "), "{msg}");
}

#[test]
fn syntax_error_column_is_exact() {
    // `=` missing its value on line 2
    let text = "[source]\ntype = \n";
    match err(text, &[]) {
        ConfigError::Syntax { line, column, .. } => {
            assert_eq!((line, column), (2, 8));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_keys_are_syntax_errors_with_a_line() {
    let text = "[source]\ntype = \"file\"\ntype = \"kafka\"\n";
    match err(text, &[]) {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_errors_do_not_echo_the_source_line() {
    let text = "[model]\napi-key = \"sk-leaky-secret\nmodel = \"m\"\n";
    let msg = err(text, &[]).to_string();
    assert!(!msg.contains("sk-leaky-secret"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn load_keeps_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[source\n").unwrap();
    match load(&path, &[]).unwrap_err() {
        ConfigError::Syntax {
            path: Some(p),
            line: 1,
            ..
        } => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("nope.toml");
    let e = load(&missing, &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("nope.toml"), "{e}");
}
