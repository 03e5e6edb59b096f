//! go's `-metricsAddr`: the node's libp2p metrics over plain HTTP, for a
//! Prometheus that used to scrape go's daemon. A daemon under a `hive` host
//! needs none of this: the host serves them at its own `/metrics`.
//!
//! One GET per connection, answered and closed: scrapes are rare and small,
//! and this keeps the daemon free of an HTTP stack.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use hive_node::NodeHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Paths answered: go's daemon serves `/debug/metrics/prometheus`.
const PATHS: &[&str] = &["/metrics", "/debug/metrics/prometheus"];
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind now (so that a taken port fails start-up), serve in the background.
pub async fn spawn(addr: SocketAddr, node: NodeHandle) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("-metricsAddr: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving metrics");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, node.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// The request line's method and path, once the head is complete.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let path = target.split('?').next()?;
    Some((method, path))
}

async fn answer(mut stream: TcpStream, node: NodeHandle) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let (status, content_type, body) = match request_line(&head) {
        Some(("GET", path)) if PATHS.contains(&path) => match node.metrics().await {
            Ok(m) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.text,
            ),
            Err(e) => ("503 Service Unavailable", "text/plain", e.to_string()),
        },
        Some(("GET", _)) => (
            "404 Not Found",
            "text/plain",
            format!("metrics are at {}\n", PATHS.join(" and ")),
        ),
        Some(_) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        None => (
            "400 Bad Request",
            "text/plain",
            "not an HTTP request\n".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"\xff\xfe"), None);
        assert_eq!(
            request_line(b"POST /debug/metrics/prometheus HTTP/1.1\r\n\r\n"),
            Some(("POST", "/debug/metrics/prometheus"))
        );
    }
}
