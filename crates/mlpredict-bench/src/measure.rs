//! Measurement: throughput figures, counting output, the mock's call
//! counters, and the machine the run is on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Machine, Throughput};

impl Throughput {
    pub fn new(records: u64, wall: Duration, user: Duration, sys: Duration) -> Throughput {
        let (n, wall) = (records as f64, wall.as_secs_f64());
        let cpu = (user + sys).as_secs_f64();
        Throughput {
            wall_s: wall,
            records_per_s: n / wall,
            cpu_s: cpu,
            cpu_us_per_record: cpu * 1e6 / n,
            sys_share: sys.as_secs_f64() / cpu.max(1e-9),
            records_per_cpu_s: n / cpu.max(1e-9),
        }
    }
}

pub(crate) fn count_lines(p: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

pub(crate) fn calls_by_route(stats: &serde_json::Value) -> BTreeMap<String, u64> {
    stats["calls_by_route"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// `250ms` or `3s` in milliseconds (0 if neither).
pub(crate) fn parse_ms(d: &str) -> u64 {
    if let Some(ms) = d.strip_suffix("ms") {
        ms.parse().unwrap_or(0)
    } else if let Some(s) = d.strip_suffix('s') {
        s.parse::<u64>().unwrap_or(0) * 1000
    } else {
        0
    }
}

pub(crate) fn machine(bin: &Path) -> Machine {
    let sh = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".into(), |s| s.trim().to_owned());
    let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let dirty = sh("git", &["status", "--porcelain"]);
    let commit = format!(
        "{}{}",
        sh("git", &["rev-parse", "--short", "HEAD"]),
        if dirty.is_empty() || dirty == "unknown" {
            ""
        } else {
            " + uncommitted changes"
        }
    );
    Machine {
        date: sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gb: mem_kb / 1_048_576.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("unknown".into(), |s| s.trim().to_owned()),
        rustc: sh("rustc", &["-V"]),
        commit,
        load_at_start: std::fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |s| {
            s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        }),
        binary: bin.display().to_string(),
    }
}
