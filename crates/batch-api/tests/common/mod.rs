#![allow(dead_code)]

pub mod mock;
pub mod openai;

use std::time::Duration;

use batch_api::{ClientTimeouts, RetryPolicy};

/// Serve `router` on a free local port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

pub fn timeouts() -> ClientTimeouts {
    ClientTimeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(5),
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

/// A local port nobody listens on.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A raw TCP server that reads one request head (and whatever body arrives
/// within 50 ms) and then closes the connection without answering.
pub async fn black_hole() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                        Err(_) if seen.windows(4).any(|w| w == b"\r\n\r\n") => break,
                        Err(_) => {}
                    }
                }
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            });
        }
    });
    (format!("http://{addr}"), count)
}
