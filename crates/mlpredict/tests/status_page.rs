//! The status page (`ui.port`, `status --serve`) in a real headless
//! browser: Debian's Chromium (scripts/chromium.sh deps installs it; the
//! test command does). A file pipeline runs against the mock with every
//! batch in flight; the page Chromium rendered must list them with their
//! phase and request progress, and a screenshot is kept under target/.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use mock_server::MockServer;
use serde_json::Value;

/// Where the screenshot goes (CI keeps target/).
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png")
}

/// `MLPREDICT_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MLPREDICT_CHROMIUM") {
        return p.into();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium not found: install it with scripts/chromium.sh deps (Debian's chromium package), or set MLPREDICT_CHROMIUM")
        })
}

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot`),
/// its own profile, killed after 3 minutes (a loaded machine starts it
/// slowly, a hung one must not hang the suite).
fn chromium_on(url: &str, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(chromium())
        .args([
            "--headless",
            // Root in a container: no user namespace for the sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--window-size=1400,860",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let out = wait_output(child, Duration::from_secs(180), "chromium");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    out
}

/// Batches of a `/status.json` not yet emitted.
fn open(v: &Value) -> Vec<&Value> {
    v["batches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["phase"] != "emitted")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium_shows_the_batches_in_flight() {
    // Batches stay at the mock for 3 minutes: all four are in flight from
    // the first seconds until the test stops the run, however slowly the
    // browser starts.
    let server = MockServer::start(batch_mock(180_000)).await.unwrap();
    let (dir, _, _) = input_dir(200, 0);
    let port = free_port();
    let config = config(
        dir.path(),
        &server.base_url(),
        &format!("poll.max-interval = \"1s\"\n\n[ui]\nport = {port}\n"),
    );
    let addr = format!("127.0.0.1:{port}");
    let c = config.clone();
    blocking(move || {
        let child = run_cmd(&c)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Four batches of 50 submitted, each polled at least once.
        let v = wait_status(&addr, Duration::from_secs(90), |v| {
            let open = open(v);
            open.len() == 4
                && open.iter().all(|b| {
                    b["phase"] == "submitted" && b["progress"]["provider_state"] == "in_progress"
                })
        });
        assert_eq!(v["pipeline"], "reviews");
        assert_eq!(v["source"], "file");
        assert_eq!(v["provider"]["up"], true, "{v}");
        assert_eq!(v["money"]["spent_usd"], Value::Null, "{v}");

        let url = format!("http://{addr}/");
        let dom = String::from_utf8(chromium_on(&url, &["--dump-dom"]).stdout).unwrap();
        // The DOM Chromium built: one row per batch in flight, its phase,
        // its provider batch and the provider's request counts.
        let rows: Vec<&str> = dom.split("<tr class=\"batch\"").skip(1).collect();
        assert_eq!(rows.len(), 4, "{dom}");
        for b in open(&v) {
            let number = b["number"].as_str().unwrap();
            let row = rows
                .iter()
                .find(|r| r.contains(&format!("data-number=\"{number}\"")))
                .unwrap_or_else(|| panic!("no row for {number}: {dom}"));
            assert!(row.contains("data-phase=\"submitted\""), "{row}");
            assert!(row.contains(">submitted</span>"), "{row}");
            assert!(row.contains(b["remote_id"].as_str().unwrap()), "{row}");
            assert!(row.contains(" / 50 · in_progress"), "{row}");
        }
        assert!(
            dom.contains("<b>4</b><span>batches not yet emitted: 4 submitted</span>"),
            "{dom}"
        );
        assert!(dom.contains("<b class=\"up\">up</b>"), "{dom}");
        assert!(dom.contains("<b>—</b><span>spent</span>"), "{dom}");

        let shot = screenshot_path();
        let _ = std::fs::remove_file(&shot);
        chromium_on(&url, &[&format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).expect("the screenshot");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{shot:?}"
        );

        sigterm(child.id());
        let out = wait_output(child, Duration::from_secs(60), "the stopped run");
        assert_eq!(out.status.code(), Some(EXIT_SIGTERM), "{}", stderr(&out));
    })
    .await;

    // `status --serve` shows the same batches from the state alone: no
    // provider figures, no request progress.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let c = config.clone();
    blocking(move || {
        let child = serve_status(&c, port);
        let v = wait_status(&addr, Duration::from_secs(60), |v| open(v).len() == 4);
        assert!(
            open(&v)
                .iter()
                .all(|b| b["phase"] == "submitted" && b["progress"].is_null()),
            "{v}"
        );
        assert_eq!(v["provider"], Value::Null, "{v}");
        let page = http_get(&addr, "/").unwrap();
        assert_eq!(
            page.matches("data-phase=\"submitted\"").count(),
            4,
            "{page}"
        );
        sigterm(child.id());
        let out = wait_output(child, Duration::from_secs(30), "status --serve");
        assert!(out.status.success(), "{}", stderr(&out));
    })
    .await;
}

#[test]
fn status_serve_names_the_flag_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://127.0.0.1:9", "");
    let out = serve_status(&config, port).wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot serve the status page on 127.0.0.1:{port} (--serve, ui.bind)"
        )),
        "{err}"
    );
}
