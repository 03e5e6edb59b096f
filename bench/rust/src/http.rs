//! A keep-alive HTTP/1.1 connection, just enough for the host's JSON API.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::args::AnyResult;

pub struct Http {
    host: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    pub async fn connect(api: &str) -> AnyResult<Http> {
        let host = api
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            host,
            stream,
            buf: Vec::new(),
        })
    }

    /// One request; returns the status and the body.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> AnyResult<(u16, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let lower = head.to_ascii_lowercase();
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        if lower.contains("transfer-encoding: chunked") {
            return Err("chunked responses are not supported by this client".into());
        }
        while self.buf.len() < head_end + len {
            self.read_more().await?;
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok((status, body))
    }

    async fn read_more(&mut self) -> AnyResult<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("HTTP connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
