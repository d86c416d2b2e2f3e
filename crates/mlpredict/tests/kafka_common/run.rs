//! Kafka pipelines of the real binary: a fresh input topic and its
//! configuration, instances started, killed and waited for, and the
//! exactly-once check of the output topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use mock_server::{MockConfig, MockServer};

use super::{broker, create_topic, kafka_config, produce, read_all, read_partition, unique};
use crate::common::{blocking, run_cmd, wait_within, EXIT_SIGTERM, MODEL};

/// A test directory, kept for inspection when MLPREDICT_KEEP_TEST_DIR is set.
pub struct TestDir {
    pub path: PathBuf,
    _guard: Option<tempfile::TempDir>,
}

pub fn test_dir() -> TestDir {
    let t = tempfile::Builder::new()
        .prefix("mlpredict-kafka")
        .tempdir()
        .unwrap();
    if std::env::var("MLPREDICT_KEEP_TEST_DIR").is_ok() {
        TestDir {
            path: t.keep(),
            _guard: None,
        }
    } else {
        TestDir {
            path: t.path().to_owned(),
            _guard: Some(t),
        }
    }
}

/// `n` input records `(k{i}, {"id": i, "text": …})`.
pub fn records(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("k{i}"), serde_json::json!({"id": i, "text": format!("review {i}: fine phone, {} stars", i % 5)}).to_string()))
        .collect()
}

/// A Kafka pipeline over a fresh 3-partition input topic holding the
/// records it was made with, and the mock it runs against.
pub struct Pipeline {
    pub bootstrap: String,
    pub server: MockServer,
    pub output: String,
    pub config: PathBuf,
    pub dir: TestDir,
}

/// A batch-mode [`Pipeline`]: the broker (started if need be), the mock of
/// `mock`, a new input topic holding `recs`, new output topic and group;
/// `extra` goes into `[ml.batch]`.
pub async fn pipeline(mock: MockConfig, recs: Vec<(String, String)>, extra: &str) -> Pipeline {
    let bootstrap = blocking(broker).await;
    let server = MockServer::start(mock).await.unwrap();
    let (input, output, group) = (unique("in"), unique("out"), unique("g"));
    create_topic(&bootstrap, &input, 3).await;
    let (b, i) = (bootstrap.clone(), input.clone());
    blocking(move || produce(&b, &i, &recs)).await;
    let dir = test_dir();
    let config = kafka_config(
        &dir.path,
        &bootstrap,
        &server.base_url(),
        &input,
        &output,
        &group,
        extra,
    );
    Pipeline {
        bootstrap,
        server,
        output,
        config,
        dir,
    }
}

/// A [`pipeline`] in synchronous mode (batch mode off); `predict` goes into
/// `[ml.predict]`.
pub async fn sync_pipeline(
    mock: MockConfig,
    recs: Vec<(String, String)>,
    predict: &str,
) -> Pipeline {
    let p = pipeline(mock, recs, "").await;
    let toml = std::fs::read_to_string(&p.config)
        .unwrap()
        .replace("enabled = true", "enabled = false");
    std::fs::write(&p.config, format!("{toml}\n[ml.predict]\n{predict}\n")).unwrap();
    p
}

/// A running instance and its log file.
pub struct Instance {
    child: Child,
    log: PathBuf,
}

impl Instance {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// An instance of `config` in the background, logging to a file next to
/// it; with `until_idle`, a bounded run.
pub fn spawn(config: &Path, until_idle: bool) -> Instance {
    spawn_env(config, until_idle, &[])
}

/// [`spawn`] with environment variables `env` set.
pub fn spawn_env(config: &Path, until_idle: bool, env: &[(&str, &str)]) -> Instance {
    let log = config.with_extension(format!("{:08x}.log", rand::random::<u32>()));
    let mut cmd = run_cmd(config);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if until_idle {
        cmd.arg("--until-idle");
    }
    cmd.envs(env.iter().copied());
    Instance {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// Wait for an instance to finish, at most a few minutes: a bounded run
/// that never ends is a failure, not a hung CI.
pub fn wait_ok(inst: Instance, what: &str) {
    wait_for_code(inst, what, 0);
}

/// Wait for the first of two instances to exit, which must exit 0 within
/// the same few minutes; returns the other, still running or not.
pub fn wait_first_ok(mut a: Instance, mut b: Instance, what: &str) -> Instance {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let first = [&mut a, &mut b]
            .into_iter()
            .position(|i| i.child.try_wait().unwrap().is_some());
        if let Some(i) = first {
            let (done, other) = if i == 0 { (a, b) } else { (b, a) };
            wait_ok(done, what);
            return other;
        }
        if std::time::Instant::now() > deadline {
            let tails = format!("{}\n---\n{}", a.log_tail(), b.log_tail());
            a.kill();
            b.kill();
            panic!("neither of {what} finished within 240 s; their logs end with:\n{tails}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for an instance sent SIGTERM: it must exit 143 (interrupted,
/// state committed) within the same few minutes.
pub fn wait_sigtermed(inst: Instance, what: &str) {
    wait_for_code(inst, what, EXIT_SIGTERM);
}

fn wait_for_code(mut inst: Instance, what: &str, code: i32) {
    let limit = Duration::from_secs(240);
    let Some(status) = wait_within(&mut inst.child, limit, Duration::from_millis(100)) else {
        inst.kill();
        panic!(
            "{what} did not finish within 240 s; its log ends with:\n{}",
            inst.log_tail()
        );
    };
    assert_eq!(
        status.code(),
        Some(code),
        "{what} failed; its log ends with:\n{}",
        inst.log_tail()
    );
}

/// The instance directories a pipeline's runs left under its local dir,
/// each with the files in it (`kafka_config`: `{dir}/local/{group}`).
pub fn instance_dirs(config: &Path) -> BTreeMap<String, Vec<String>> {
    let group = config.file_stem().unwrap();
    let base = config.parent().unwrap().join("local").join(group);
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    names(&base)
        .into_iter()
        .filter(|n| n.starts_with("instance-"))
        .map(|n| {
            let files = names(&base.join(&n));
            (n, files)
        })
        .collect()
}

/// Every input id exactly once, ok with the mock's answer or an error.
pub fn check(bootstrap: &str, topic: &str, n: usize) -> (usize, usize) {
    let out = read_all(bootstrap, topic, 3);
    let mut seen = BTreeMap::new();
    let (mut ok, mut err) = (0, 0);
    for (key, value) in &out {
        let v: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|e| panic!("bad output {value}: {e}"));
        let id = v["id"].as_u64().unwrap();
        assert_eq!(
            key.as_deref(),
            Some(format!("k{id}").as_str()),
            "output key = input key"
        );
        assert!(seen.insert(id, ()).is_none(), "record {id} emitted twice");
        match v["ml_predict"]["status"].as_str() {
            Some("ok") => {
                ok += 1;
                let text = v["text"].as_str().unwrap();
                assert_eq!(
                    v["prediction"].as_str(),
                    Some(mock_server::fake::chat_reply(MODEL, text).as_str())
                );
            }
            _ => err += 1,
        }
    }
    let missing: Vec<_> = (0..n as u64)
        .filter(|i| !seen.contains_key(i))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "never emitted: {missing:?} ({} of {n} seen)",
        seen.len()
    );
    (ok, err)
}

/// Output ids per partition, in offset order.
pub fn ids_by_partition(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<u64>> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let ids = read_partition(bootstrap, topic, p)
            .iter()
            .map(|v| {
                serde_json::from_str::<serde_json::Value>(v).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        out.insert(p, ids);
    }
    out
}
