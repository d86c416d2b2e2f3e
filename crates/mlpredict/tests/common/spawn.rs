//! Running the binary: to the end, in the background, killed (SIGKILL at
//! random moments, SIGTERM), and waiting for it with a deadline.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{bin, stderr};

/// `mlpredict run --config <config>` (`mlpredict sql --file <config>` for
/// a `.sql` job), logging at info.
pub fn run_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    if config.extension().is_some_and(|e| e == "sql") {
        cmd.arg("sql").arg("--file").arg(config);
    } else {
        cmd.arg("run").arg("--config").arg(config);
    }
    cmd.env("MLPREDICT_LOG", "info");
    cmd
}

/// A run to the end, with `-D` `defines`.
pub fn run(config: &Path, defines: &[&str]) -> Output {
    let mut cmd = run_cmd(config);
    for d in defines {
        cmd.arg("-D").arg(d);
    }
    cmd.output().expect("run mlpredict")
}

/// A run to the end that must succeed.
pub fn finish(config: &Path) -> Output {
    finish_as("", config)
}

/// [`finish`], its failure message starting with `label`.
pub fn finish_as(label: &str, config: &Path) -> Output {
    let out = run(config, &[]);
    assert!(
        out.status.success(),
        "{label}final run failed: {}",
        stderr(&out)
    );
    out
}

/// A run in the background, stderr piped, aborted at `failpoint`
/// (`MLPREDICT_FAILPOINT`) if given.
pub fn spawn(config: &Path, failpoint: Option<&str>) -> Child {
    let mut cmd = run_cmd(config);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(fp) = failpoint {
        cmd.env("MLPREDICT_FAILPOINT", fp);
    }
    cmd.spawn().expect("spawn mlpredict")
}

/// A run that must abort at `failpoint`; its output.
pub fn crash_at(label: &str, config: &Path, failpoint: &str) -> Output {
    let out = spawn(config, Some(failpoint)).wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "{label}the failpoint should have aborted the run"
    );
    out
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM to the process `pid`.
pub fn sigterm(pid: u32) {
    unsafe { libc_kill(pid as i32, 15) };
}

/// SIGINT (Ctrl-C) to the process `pid`.
pub fn sigint(pid: u32) {
    unsafe { libc_kill(pid as i32, 2) };
}

/// The exit codes of a run stopped by SIGINT / SIGTERM (128 + the signal).
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;

/// Waits for `child`, looking every `poll`, at most `limit`: its status, or
/// `None` when it still runs past the deadline.
pub fn wait_within(child: &mut Child, limit: Duration, poll: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Wait at most `limit` for the child; kill it and fail past that.
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Output {
    if wait_within(&mut child, limit, Duration::from_millis(20)).is_none() {
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        panic!("{what} did not finish within {limit:?}:\n{}", stderr(&out));
    }
    child.wait_with_output().unwrap()
}

/// `CHAOS_SEED` if set (to replay a failure), else `default`.
pub fn chaos_seed(default: u64) -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `config` again and again, each run SIGKILLed after
/// `delay_ms.0 + x % delay_ms.1` ms (x a xorshift sequence from `seed`),
/// until `kills` kills landed or a run finished before its kill (it must
/// have succeeded). Returns the kills that landed; the caller finishes.
pub fn kill_9_at_random_moments(
    config: &Path,
    seed: u64,
    kills: u32,
    delay_ms: (u64, u64),
    label: &str,
) -> u32 {
    let mut x = seed | 1;
    let mut landed = 0;
    while landed < kills {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let after = Duration::from_millis(delay_ms.0 + x % delay_ms.1);
        let mut child = spawn(config, None);
        let started = Instant::now();
        while started.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match child.try_wait().unwrap() {
            Some(status) => {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(status.success(), "{label}run failed on its own: {err}");
                // Finished before the kill: the remaining kills have nothing to hit.
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                landed += 1;
            }
        }
    }
    landed
}

/// A run in the background, SIGTERMed `after` its start: it must exit 143
/// (interrupted, resumable) within `within` of the signal. Its output.
pub fn sigterm_after(config: &Path, after: Duration, within: Duration) -> Output {
    let child = spawn(config, None);
    std::thread::sleep(after);
    let stopped = Instant::now();
    sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(EXIT_SIGTERM),
        "SIGTERM should exit 143: {}",
        stderr(&out)
    );
    assert!(
        stopped.elapsed() < within,
        "slow shutdown: {:?}",
        stopped.elapsed()
    );
    out
}

/// The API-key variable of [`key_from_env`] configurations.
pub const KEY_VAR: &str = "MLPREDICT_TEST_API_KEY";

/// Make `config` read its API key from `${KEY_VAR}` (as a real pipeline
/// reads `${OPENAI_API_KEY}`); returns the key it had, which a run then
/// needs in `KEY_VAR`.
pub fn key_from_env(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let mut key = None;
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("api-key = ") {
            Some(v) => {
                key = Some(v.trim_matches('"').to_owned());
                format!("api-key = \"${{{KEY_VAR}}}\"")
            }
            None => l.to_owned(),
        })
        .collect();
    std::fs::write(config, text.join("\n") + "\n").unwrap();
    key.unwrap_or_else(|| panic!("no api-key in {}", config.display()))
}

/// `mlpredict status --config <config>` with [`KEY_VAR`] unset: it must not
/// need the API key.
pub fn status_without_key(config: &Path) -> Output {
    Command::new(bin())
        .arg("status")
        .arg("--config")
        .arg(config)
        .env_remove(KEY_VAR)
        .output()
        .expect("run mlpredict status")
}

/// The batch rows of `status` output: (batch_number, phase, records).
pub fn status_rows(stdout: &str) -> Vec<(String, String, u64)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("id "))
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let records = cols[3].parse().unwrap_or_else(|_| panic!("bad row {l:?}"));
            (cols[1].to_owned(), cols[2].to_owned(), records)
        })
        .collect()
}
