//! Client subcommands: talk to a running host over its HTTP API.

use std::io::Write;

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Command;

/// A client of one host's HTTP API.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--api must be an http:// URL, got {base:?}");
        }
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api { base, http })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(self.url(path))).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(self.http.post(self.url(path)).json(body)).await
    }

    async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.call(
            self.http
                .post(self.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body),
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send, and turn both transport failures and API error bodies into
    /// messages a person can act on.
    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "cannot reach the Hive host at {} (is `hive up` running? set --api or HIVE_API): {e}",
                    self.base
                )
            } else {
                anyhow::anyhow!("request to the Hive host at {} failed: {e}", self.base)
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("cannot read the host's answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let code = value
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("the host answered {status}: {code}: {message}");
        }
        Ok(value)
    }

    fn events_url(&self) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{ws}/api/events")
    }
}

pub async fn run(command: Command, api: &str) -> anyhow::Result<()> {
    let api = Api::new(api)?;
    match command {
        Command::Up(_) => bail!("`up` is not a client command"),
        Command::Status => print_pretty(&api.get("/api/status").await?),
        Command::Peers => print_pretty(&api.get("/api/peers").await?),
        Command::Dial { addr } => {
            let body = serde_json::json!({ "addr": addr });
            print_line(&api.post_json("/api/dial", &body).await?)
        }
        Command::Publish { topic, message } => {
            let data = message_or_stdin(message).await?;
            let path = format!("/api/topics/{}/publish", encode_segment(&topic));
            print_line(&api.post_bytes(&path, data).await?)
        }
        Command::Send {
            peer,
            message,
            wait,
        } => {
            let data = message_or_stdin(message).await?;
            let path = format!("/api/peers/{}/send?wait={wait}", encode_segment(&peer));
            print_line(&api.post_bytes(&path, data).await?)
        }
        Command::Messages {
            topic,
            kind,
            after,
            limit,
        } => {
            let mut path = format!(
                "/api/messages?kind={}&after={after}&limit={limit}",
                encode_segment(&kind)
            );
            if let Some(topic) = topic {
                path.push_str(&format!("&topic={}", encode_segment(&topic)));
            }
            print_pretty(&api.get(&path).await?)
        }
        Command::Subscribe { topic, count } => subscribe(&api, &topic, count).await,
    }
}

/// Open the event stream first, then subscribe, so that no message sent
/// right after the subscription can slip by unseen.
async fn subscribe(api: &Api, topic: &str, count: Option<u64>) -> anyhow::Result<()> {
    let url = api.events_url();
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("cannot open the event stream at {url}"))?;
    // The first frame is the daemon state; once it is here the host has
    // registered this stream.
    match ws.next().await {
        Some(Ok(_)) => {}
        Some(Err(e)) => bail!("event stream failed: {e}"),
        None => bail!("the host closed the event stream"),
    }
    let path = format!("/api/topics/{}/subscribe", encode_segment(topic));
    api.post_json(&path, &Value::Null).await?;
    if count == Some(0) {
        return Ok(());
    }

    let mut seen = 0u64;
    while let Some(frame) = ws.next().await {
        let text = match frame.context("event stream failed")? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(event) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("message") if event.get("topic").and_then(Value::as_str) == Some(topic) => {
                print_line(&event)?;
                seen += 1;
                if count.is_some_and(|n| seen >= n) {
                    return Ok(());
                }
            }
            Some("lagged") => eprintln!("warning: fell behind the event stream: {event}"),
            _ => {}
        }
    }
    bail!("the host closed the event stream")
}

async fn message_or_stdin(message: Option<String>) -> anyhow::Result<Vec<u8>> {
    match message {
        Some(m) => Ok(m.into_bytes()),
        None => {
            let mut data = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut data)
                .await
                .context("cannot read the message from stdin")?;
            Ok(data)
        }
    }
}

fn print_pretty(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format the answer")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("cannot write to stdout")?;
    Ok(())
}

fn print_line(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").context("cannot write to stdout")?;
    out.flush().context("cannot flush stdout")?;
    Ok(())
}

/// Percent-encode one URL path segment (topics may contain `/`, spaces...).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("chat"), "chat");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn events_url_follows_the_api_scheme() {
        let api = Api::new("http://127.0.0.1:7700/").unwrap();
        assert_eq!(api.events_url(), "ws://127.0.0.1:7700/api/events");
    }
}
