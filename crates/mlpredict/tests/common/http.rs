//! Plain HTTP/1.1 GETs against the binary's endpoints (`/metrics`, the
//! status page), and the `status --serve` command.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, KEY_VAR};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1 with `Connection: close`; the body of a 200.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("GET {path}: {head}\n{body}")));
    }
    Ok(body.to_owned())
}

/// `/status.json` at `addr` until `done` holds for it, at most `limit`.
pub fn wait_status(
    addr: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let last = match http_get(addr, "/status.json") {
            Ok(body) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if done(&v) {
                    return v;
                }
                body
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "the status at {addr} did not get there within {limit:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mlpredict status --config <config> --serve <port>` in the background,
/// without the API key.
pub fn serve_status(config: &Path, port: u16) -> Child {
    Command::new(bin())
        .arg("status")
        .arg("--config")
        .arg(config)
        .args(["--serve", &port.to_string()])
        .env_remove(KEY_VAR)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mlpredict status --serve")
}
