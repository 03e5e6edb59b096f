//! Who may talk to the API from a web browser: the `Host` and `Origin` checks.
//!
//! A page on any web site runs in the user's browser, on the user's machine,
//! and can reach the loopback API. Two things stop it:
//!
//! - **DNS rebinding.** A name of the attacker's that first resolves to its
//!   own server and then to 127.0.0.1 makes the browser treat the API's
//!   answers as same-origin with the attacker's page. Those requests carry
//!   `Host: evil.example:PORT`, so every request whose `Host` is not a name of
//!   this API (loopback names, the bound address, `--allowed-host`) gets 403.
//!   An IP literal cannot be rebound, which is why a host bound to all
//!   interfaces accepts any IP literal with its port.
//! - **Cross-origin writes.** CORS only keeps a foreign page from *reading*
//!   answers: a "simple" `fetch` POST (`text/plain`) is sent without a
//!   preflight, and WebSockets have no same-origin rule at all. Browsers
//!   always put `Origin` on such requests, so a state-changing request (not
//!   GET/HEAD/OPTIONS) or a WebSocket upgrade whose `Origin` is neither the
//!   API's own (`http(s)://` + an allowed host) nor an `--allowed-origin`
//!   gets 403. Requests without `Origin` come from programs (curl, the CLI,
//!   the Python client), not from pages, and pass.
//!
//! Both checks run before the token check, so a stolen or configured token
//! does not switch them off (defence in depth). `--allowed-origin` entries
//! also get CORS headers, so that an app on that origin can read answers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The names and origins this API answers to.
#[derive(Debug, Clone)]
pub struct Policy {
    port: u16,
    /// The address the API is bound to (unspecified: all interfaces).
    bound: IpAddr,
    /// `--allowed-host` entries, lowercase: a name, with an optional port.
    hosts: Vec<(String, Option<u16>)>,
    /// `--allowed-origin` entries, normalised (`scheme://host[:port]`).
    origins: Vec<String>,
}

/// A bad `--allowed-host` or `--allowed-origin` value.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("--allowed-host {0:?}: expected a host name or address, optionally with :PORT")]
    Host(String),
    #[error("--allowed-origin {0:?}: expected http://HOST[:PORT] or https://HOST[:PORT]")]
    Origin(String),
}

impl Policy {
    /// The policy of an API listening on `local`.
    pub fn new(
        local: SocketAddr,
        allowed_hosts: &[String],
        allowed_origins: &[String],
    ) -> Result<Self, PolicyError> {
        let hosts = allowed_hosts
            .iter()
            .map(|h| {
                split_authority(h.trim())
                    .filter(|(name, _)| !name.is_empty() && !name.contains('/'))
                    .ok_or_else(|| PolicyError::Host(h.clone()))
            })
            .collect::<Result<_, _>>()?;
        let origins = allowed_origins
            .iter()
            .map(|o| normalise_origin(o.trim()).ok_or_else(|| PolicyError::Origin(o.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            port: local.port(),
            bound: local.ip(),
            hosts,
            origins,
        })
    }

    /// Whether `authority` (a `Host` value, or an origin's `host[:port]`,
    /// `default_port` standing in for an absent port) names this API.
    fn is_own_authority(&self, authority: &str, default_port: u16) -> bool {
        let Some((name, port)) = split_authority(authority) else {
            return false;
        };
        if let Some(&(_, wanted)) = self.hosts.iter().find(|(h, _)| *h == name) {
            return wanted.is_none_or(|p| Some(p) == port || (port.is_none() && p == default_port));
        }
        if port.unwrap_or(default_port) != self.port {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        match parse_ip(&name) {
            Some(ip) => ip.is_loopback() || ip == self.bound || self.bound.is_unspecified(),
            None => false,
        }
    }

    /// Whether a request carrying `origin` comes from the API's own pages or
    /// from an `--allowed-origin`.
    fn is_allowed_origin(&self, origin: &str) -> bool {
        let Some(normal) = normalise_origin(origin) else {
            return false; // "null", garbage, other schemes
        };
        if self.origins.contains(&normal) {
            return true;
        }
        let (scheme, authority) = normal.split_once("://").unwrap_or(("", ""));
        let default_port = if scheme == "https" { 443 } else { 80 };
        self.is_own_authority(authority, default_port)
    }

    /// An `--allowed-origin` (not the API's own), which gets CORS headers.
    fn is_listed_origin(&self, origin: &str) -> bool {
        normalise_origin(origin).is_some_and(|o| self.origins.contains(&o))
    }
}

/// Split `host[:port]` (IPv6 in brackets) into a lowercase name and port.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.to_ascii_lowercase();
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p.parse().ok()?)),
            None => (authority.clone(), None),
        }
    };
    if name.is_empty() || name.contains(['@', ' ', '/', '?', '#']) {
        return None;
    }
    Some((name, port))
}

/// An IP literal as it appears in a `Host` (IPv6 in brackets).
fn parse_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// `Scheme://Host:port/` → `scheme://host:port`; `None` for anything but a
/// bare http(s) origin.
fn normalise_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (name, port) = split_authority(authority)?;
    Some(match port {
        Some(p) => format!("{scheme}://{name}:{p}"),
        None => format!("{scheme}://{name}"),
    })
}

/// Whether the request asks to switch protocols (a WebSocket handshake).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        || headers.contains_key(header::SEC_WEBSOCKET_KEY)
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// Methods that change nothing (and that a page can send anyway).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: 403 for a foreign `Host`, and for a foreign `Origin` on
/// a state-changing request or a WebSocket upgrade.
pub async fn check(State(state): State<super::AppState>, request: Request, next: Next) -> Response {
    let policy = &state.limits.guard;
    // Probes address a pod or machine by whatever name they use, and the
    // answer reveals nothing.
    if request.uri().path() != "/healthz" {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        match host {
            Some(h) if policy.is_own_authority(h, 80) => {}
            Some(h) => {
                tracing::warn!(host = %h, "refused a request for a foreign Host (DNS rebinding?)");
                return ApiError::Forbidden(format!(
                    "Host {h:?} is not a name of this API; start the host with --allowed-host NAME to allow it"
                ))
                .into_response();
            }
            None => {
                return ApiError::Forbidden("the request has no Host header".into()).into_response()
            }
        }
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let guarded = !is_safe(request.method()) || is_upgrade(request.headers());
    if guarded && !policy.is_allowed_origin(&origin) {
        tracing::warn!(%origin, method = %request.method(), path = %request.uri().path(),
            "refused a cross-origin request");
        return ApiError::Forbidden(format!(
            "requests from the web origin {origin:?} are not allowed; start the host with --allowed-origin {origin} to allow it"
        ))
        .into_response();
    }
    if !policy.is_listed_origin(&origin) {
        return next.run(request).await;
    }
    cors(&origin, request, next).await
}

/// CORS for an `--allowed-origin`: answer its preflights, and let it read.
async fn cors(origin: &str, request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key, x-request-id"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(request).await
    };
    if let Ok(value) = HeaderValue::from_str(origin) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        // Readable by the page too: the id to quote in a bug report, and
        // when to retry a 503.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, retry-after"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bind: &str) -> Policy {
        Policy::new(
            bind.parse().unwrap(),
            &["hive.example".into(), "box.lan:9000".into()],
            &["http://app.example:3000".into()],
        )
        .unwrap()
    }

    #[test]
    fn hosts() {
        let p = policy("127.0.0.1:7700");
        for ok in [
            "127.0.0.1:7700",
            "localhost:7700",
            "LOCALHOST:7700",
            "[::1]:7700",
            "127.0.0.2:7700",
            "hive.example",
            "hive.example:443",
            "box.lan:9000",
        ] {
            assert!(p.is_own_authority(ok, 80), "{ok} refused");
        }
        for bad in [
            "evil.example:7700",
            "localhost:7701",
            "127.0.0.1",
            "10.0.0.1:7700",
            "box.lan:9001",
            "box.lan",
            "localhost:7700@evil",
            "",
            "[::1:7700",
        ] {
            assert!(!p.is_own_authority(bad, 80), "{bad} accepted");
        }
        let all = policy("0.0.0.0:7700");
        assert!(all.is_own_authority("192.168.1.5:7700", 80));
        assert!(!all.is_own_authority("rebind.example:7700", 80));
        let one = policy("192.168.1.5:7700");
        assert!(one.is_own_authority("192.168.1.5:7700", 80));
        assert!(!one.is_own_authority("192.168.1.6:7700", 80));
    }

    #[test]
    fn origins() {
        let p = policy("127.0.0.1:7700");
        for ok in [
            "http://127.0.0.1:7700",
            "http://localhost:7700",
            "https://hive.example",
            "http://app.example:3000",
            "HTTP://App.Example:3000/",
        ] {
            assert!(p.is_allowed_origin(ok), "{ok} refused");
        }
        for bad in [
            "null",
            "http://localhost",
            "http://127.0.0.1:7701",
            "http://evil.example:7700",
            "file://",
            "chrome-extension://abc",
            "http://app.example:3001",
            "",
        ] {
            assert!(!p.is_allowed_origin(bad), "{bad} accepted");
        }
        assert!(p.is_listed_origin("http://app.example:3000"));
        assert!(!p.is_listed_origin("http://127.0.0.1:7700"));
    }

    #[test]
    fn bad_flags_are_refused() {
        let local = "127.0.0.1:1".parse().unwrap();
        assert!(Policy::new(local, &["a/b".into()], &[]).is_err());
        assert!(Policy::new(local, &["a:port".into()], &[]).is_err());
        assert!(Policy::new(local, &[], &["app.example".into()]).is_err());
        assert!(Policy::new(local, &[], &["ftp://x".into()]).is_err());
    }
}
