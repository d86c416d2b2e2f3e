//! Child processes and what they cost: wall time, CPU time and peak RSS
//! from `wait4`'s rusage, and live figures from `/proc/<pid>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What one finished run of `mlpredict run` cost and printed.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// Peak resident set size (rusage `ru_maxrss`), bytes.
    pub max_rss: u64,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr_tail: String,
}

impl Measured {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }

    /// A number printed in the summary after `label` (e.g. `"API calls: "`).
    pub fn summary_number(&self, label: &str) -> Option<u64> {
        let at = self.stdout.find(label)? + label.len();
        let digits: String = self.stdout[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    }

    /// `N records read in ...`
    pub fn records_read(&self) -> Option<u64> {
        let line = self
            .stdout
            .lines()
            .find(|l| l.contains("records read in"))?;
        line.split_whitespace().next()?.parse().ok()
    }
}

/// A child started with stdout/stderr going to files, measured at exit.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    pub fn start(mut cmd: Command, logs: &Path, name: &str) -> anyhow::Result<Running> {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        Ok(Running {
            child,
            started,
            stdout,
            stderr,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Wait for exit; CPU and peak RSS come from the kernel's rusage.
    pub fn wait(self) -> anyhow::Result<Measured> {
        Ok(self.reap(0)?.expect("a blocking wait4 returns an exit"))
    }

    /// The exit, if the child has exited (`wait4` with `WNOHANG`).
    pub fn try_wait(&self) -> anyhow::Result<Option<Measured>> {
        self.reap(libc::WNOHANG)
    }

    /// Stderr's last lines so far.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn reap(&self, flags: i32) -> anyhow::Result<Option<Measured>> {
        let mut status = 0;
        // SAFETY: rusage is plain old data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(self.pid(), &mut status, flags, &mut ru) };
        let wall = self.started.elapsed();
        if r < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        let exit_code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        Ok(Some(Measured {
            wall,
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
            max_rss: ru.ru_maxrss as u64 * 1024,
            exit_code,
            stdout,
            stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }))
    }
}

/// utime + stime of a live process, from `/proc/<pid>/stat`.
pub fn proc_cpu(pid: i32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Whether a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A `/proc/<pid>/status` size field (`VmRSS`, `VmHWM`), bytes.
pub fn proc_status_bytes(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `mlpredict mock-server` as its own process.
pub struct Mock {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub base: String,
    addr: String,
    cpu_at_start: Duration,
}

impl Mock {
    pub fn start(bin: &Path, args: &[String], logs: &Path, name: &str) -> anyhow::Result<Mock> {
        let mut cmd = Command::new(bin);
        cmd.arg("mock-server")
            .args(["--port", "0"])
            .args(args)
            .env("MLPREDICT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(
                logs.join(format!("{name}.mock.stderr")),
            )?);
        let mut child = cmd.spawn().context("cannot start the mock server")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("mock server listening on ") else {
            let _ = child.kill();
            bail!("unexpected first line from the mock server: {line:?}");
        };
        let base = url.trim_end_matches("/v1").to_owned();
        let addr = base.trim_start_matches("http://").to_owned();
        let cpu_at_start = proc_cpu(child.id() as i32);
        Ok(Mock {
            child,
            _stdout: stdout,
            base,
            addr,
            cpu_at_start,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CPU the mock used since it started listening.
    pub fn cpu(&self) -> Duration {
        proc_cpu(self.pid()).saturating_sub(self.cpu_at_start)
    }

    pub fn rss(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmHWM").unwrap_or(0)
    }

    /// `GET /mock/stats`.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let body = http_get(&self.addr, "/mock/stats")?;
        serde_json::from_slice(&body).context("mock stats are not json")
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET with `Connection: close` (the mock answers with a
/// Content-Length; no client library needed).
fn http_get(addr: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(resp[split + 4..].to_vec())
}
