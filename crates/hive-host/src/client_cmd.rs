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
        // A host started with an API token wants it on every request.
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = std::env::var("HIVE_API_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .context("HIVE_API_TOKEN is not a valid header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
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
        Command::Up(_) | Command::Doctor(_) => bail!("`up` and `doctor` are not client commands"),
        Command::Status => print_pretty(&api.get("/api/status").await?),
        Command::Peers => print_pretty(&api.get("/api/peers").await?),
        Command::Spawn { parent, count } => {
            let body = serde_json::json!({ "parent": parent, "count": count });
            eprintln!("starting {count} node(s); this returns once each is running");
            let nodes = api.post_json("/api/nodes", &body).await?;
            print!(
                "{}",
                render_tree(nodes.as_array().map(Vec::as_slice).unwrap_or(&[]), true)
            );
            Ok(())
        }
        Command::Nodes { json } => {
            let nodes = api.get("/api/nodes").await?;
            if json {
                print_pretty(&nodes)
            } else {
                print!(
                    "{}",
                    render_tree(nodes.as_array().map(Vec::as_slice).unwrap_or(&[]), false)
                );
                Ok(())
            }
        }
        Command::StopNode { id } => {
            let path = format!("/api/nodes/{}", encode_segment(&id));
            print_line(&api.call(api.http.delete(api.url(&path))).await?)
        }
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

/// Nodes as an indented tree: each under its parent, in the host's order.
/// `flat` lists them without nesting (a spawn result holds no parents).
fn render_tree(nodes: &[Value], flat: bool) -> String {
    fn line(node: &Value) -> String {
        let s = |k: &str| {
            node.get(k)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        let peers = node.get("peers").and_then(Value::as_u64).unwrap_or(0);
        let tension = node.get("tension").and_then(Value::as_f64).unwrap_or(0.0);
        let pid = node
            .get("pid")
            .and_then(Value::as_u64)
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        format!(
            "{} {} peers={peers} τ={tension:.2} pid={pid} {}",
            s("id"),
            s("state"),
            s("peer_id")
        )
    }
    fn walk(nodes: &[Value], parent: Option<&str>, prefix: &str, out: &mut String) {
        let children: Vec<&Value> = nodes
            .iter()
            .filter(|n| n.get("parent").and_then(Value::as_str) == parent)
            .collect();
        for (i, child) in children.iter().enumerate() {
            let last = i + 1 == children.len();
            let (branch, next) = match parent {
                None => ("", String::new()),
                Some(_) if last => ("└─ ", format!("{prefix}   ")),
                Some(_) => ("├─ ", format!("{prefix}│  ")),
            };
            out.push_str(&format!("{prefix}{branch}{}\n", line(child)));
            let id = child.get("id").and_then(Value::as_str);
            if id.is_some() {
                walk(nodes, id, &next, out);
            }
        }
    }
    let mut out = String::new();
    if flat {
        for node in nodes {
            out.push_str(&line(node));
            out.push('\n');
        }
    } else {
        walk(nodes, None, "", &mut out);
    }
    out
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
    fn nodes_render_as_a_tree() {
        let nodes = serde_json::json!([
            {"id": "n0", "parent": null, "state": "running", "peers": 2, "tension": 0.0, "pid": 10, "peer_id": "A"},
            {"id": "n1", "parent": "n0", "state": "running", "peers": 1, "tension": 0.25, "pid": 11, "peer_id": "B"},
            {"id": "n2", "parent": "n1", "state": "restarting", "peers": 0, "tension": 1.0, "pid": null, "peer_id": "C"},
            {"id": "n3", "parent": "n0", "state": "running", "peers": 1, "tension": 0.0, "pid": 13, "peer_id": "D"}
        ]);
        let text = render_tree(nodes.as_array().unwrap(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("n0 running peers=2"));
        assert!(lines[1].starts_with("├─ n1 running"));
        assert!(lines[2].starts_with("│  └─ n2 restarting"), "{text}");
        assert!(lines[2].contains("pid=-"));
        assert!(lines[3].starts_with("└─ n3 running"));
    }

    #[test]
    fn events_url_follows_the_api_scheme() {
        let api = Api::new("http://127.0.0.1:7700/").unwrap();
        assert_eq!(api.events_url(), "ws://127.0.0.1:7700/api/events");
    }
}
