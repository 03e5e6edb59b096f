//! Calls to a host's HTTP API as any client (or a page in a browser) makes
//! them, with whatever headers and token a test chooses, answered with the
//! status rather than an error: for tests of who is let in.

use anyhow::Result;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Host;

/// What one call got.
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when the body is not JSON).
    pub body: Value,
}

impl ApiAnswer {
    /// The JSON error code (`""` without one).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Host {
    /// `method path` with `body` (sent as JSON when it starts with `{`,
    /// else as text/plain, what a page may send without a preflight), extra
    /// `headers`, and `token` as the bearer when given.
    pub async fn api_call(
        &self,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<ApiAnswer> {
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        };
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body.to_owned());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        Ok(ApiAnswer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// The HTTP status a WebSocket handshake to `/api/events` + `query` got
    /// with extra `headers`: the refusal's, or 101 when it opened.
    pub async fn ws_status(&self, query: &str, headers: &[(&str, &str)]) -> Result<u16> {
        use tokio_tungstenite::tungstenite::Error;
        let url = self.url("/api/events").replacen("http", "ws", 1);
        let mut request = format!("{url}{query}").into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((_, response)) => Ok(response.status().as_u16()),
            Err(Error::Http(response)) => Ok(response.status().as_u16()),
            Err(e) => anyhow::bail!("WS handshake failed without an HTTP answer: {e}"),
        }
    }
}
