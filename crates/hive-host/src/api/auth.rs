//! API tokens and their scopes.
//!
//! With no token configured the API is open (it binds loopback only, and
//! [`super::guard`] keeps web pages out). With tokens, every request to a
//! protected route group (every group but the public one, see
//! [`super::router`]) must carry one as `Authorization: Bearer TOKEN`,
//! or (for browsers' WebSockets, which cannot set headers) as `?token=`.
//! Each token has scopes; a request outside them gets 403 naming the scope:
//!
//! - `read`: every GET (status, peers, topics, events, messages, outbox,
//!   tension, metrics, the node list);
//! - `write`: publish, send, subscribe, unsubscribe;
//! - `admin`: dial, spawn, delete and reproduce nodes (any other change).
//!
//! Scopes do not imply one another. `--api-token` has all three; more tokens
//! come from `--api-tokens-file`, one `NAME:SCOPES:TOKEN` a line.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, AppState};

/// One permission a token may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured token: who it is for, what it may do, the secret.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    secret: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Every token of this host; empty means the API needs none.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<ApiToken>);

/// A bad `--api-tokens-file`.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error(
        "line {line}: expected NAME:SCOPES:TOKEN (SCOPES: read, write, admin, comma-separated)"
    )]
    Shape { line: usize },
    #[error("line {line}: unknown scope {scope:?} (expected read, write or admin)")]
    Scope { line: usize, scope: String },
    #[error("line {line}: the token name {name:?} is used twice")]
    DuplicateName { line: usize, name: String },
    #[error("line {line}: this token is already configured (tokens must be distinct)")]
    DuplicateSecret { line: usize },
}

impl Tokens {
    /// `--api-token`, when given, as the all-scopes token named `default`.
    pub fn new(all_scopes: Option<String>) -> Self {
        Tokens(
            all_scopes
                .map(|secret| ApiToken {
                    name: "default".into(),
                    scopes: Scope::ALL.to_vec(),
                    secret,
                })
                .into_iter()
                .collect(),
        )
    }

    /// Adds the tokens of an `--api-tokens-file`: `NAME:SCOPES:TOKEN` per
    /// line; blank lines and lines starting with `#` are skipped.
    pub fn add_file(&mut self, text: &str) -> Result<(), TokenFileError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let mut parts = raw.splitn(3, ':');
            let (Some(name), Some(scopes), Some(secret)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(TokenFileError::Shape { line });
            };
            let (name, secret) = (name.trim(), secret.trim());
            if name.is_empty() || secret.is_empty() || scopes.trim().is_empty() {
                return Err(TokenFileError::Shape { line });
            }
            let mut parsed = Vec::new();
            for s in scopes.split(',').map(str::trim) {
                let scope = Scope::parse(s).ok_or_else(|| TokenFileError::Scope {
                    line,
                    scope: s.to_owned(),
                })?;
                if !parsed.contains(&scope) {
                    parsed.push(scope);
                }
            }
            if self.0.iter().any(|t| t.name == name) {
                return Err(TokenFileError::DuplicateName {
                    line,
                    name: name.to_owned(),
                });
            }
            if self.0.iter().any(|t| t.secret == secret) {
                return Err(TokenFileError::DuplicateSecret { line });
            }
            self.0.push(ApiToken {
                name: name.to_owned(),
                scopes: parsed,
                secret: secret.to_owned(),
            });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token `presented` is, compared in constant time against every
    /// configured one (timing reveals neither a prefix nor which matched).
    fn find(&self, presented: &str) -> Option<&ApiToken> {
        let mut found = None;
        for token in &self.0 {
            if hive_proto::secret::same_secret(presented.as_bytes(), token.secret.as_bytes()) {
                found = Some(token);
            }
        }
        found
    }
}

/// What a group of routes asks of a token. Safe methods (GET, HEAD,
/// OPTIONS) need `read` everywhere; the rest depends on the group. Public
/// routes (liveness, the API's description, the dashboard's files) are
/// simply not in a protected group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any valid token, whatever its scopes (`/api/whoami`).
    AnyToken,
    /// Publish, send, subscribe, unsubscribe: `write` for POST.
    Write,
    /// Everything else that changes something: `admin`.
    Admin,
}

/// The scope a request needs (`None`: any valid token will do).
fn required_scope(method: &Method, access: Access) -> Option<Scope> {
    if access == Access::AnyToken {
        return None;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Scope::Read);
    }
    Some(if access == Access::Write && *method == Method::POST {
        Scope::Write
    } else {
        Scope::Admin
    })
}

/// The token a request presents, from the header or the query string
/// (`?token=`, percent-decoded: a client that encodes a base64 token's
/// `+`, `/` and `=` as it should is let in).
fn presented(request: &Request) -> Option<String> {
    let from_header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    from_header.or_else(|| {
        request.uri().query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "token")
                .map(|(_, v)| percent_decoded(v))
        })
    })
}

/// `%XX` escapes decoded (a `+` stays a `+`: tokens are not form text);
/// text that is not a valid escape sequence, or not UTF-8 once decoded, is
/// taken as it is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Which token a request was let in with (absent: no tokens configured).
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

/// Middleware for `Router::route_layer`: the routes need any valid token.
pub async fn any_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, Access::AnyToken, request, next).await
}

/// Middleware for `Router::route_layer`: [`Access::Write`] routes.
pub async fn write(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, Access::Write, request, next).await
}

/// Middleware for `Router::route_layer`: [`Access::Admin`] routes.
pub async fn admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, Access::Admin, request, next).await
}

/// 401 without a valid token, 403 outside its scopes.
async fn check(state: &AppState, access: Access, mut request: Request, next: Next) -> Response {
    let tokens = &state.limits.tokens;
    if tokens.is_empty() {
        return next.run(request).await;
    }
    let Some(secret) = presented(&request) else {
        return ApiError::Unauthorized(
            "this host requires an API token: send Authorization: Bearer TOKEN".into(),
        )
        .into_response();
    };
    let Some(token) = tokens.find(&secret) else {
        return ApiError::Unauthorized("wrong API token".into()).into_response();
    };
    if let Some(scope) = required_scope(request.method(), access) {
        if !token.scopes.contains(&scope) {
            return ApiError::MissingScope {
                scope,
                token: token.name.clone(),
            }
            .into_response();
        }
    }
    request.extensions_mut().insert(Caller(token.clone()));
    next.run(request).await
}

/// `GET /api/whoami`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The token's name (`default` for `--api-token`); null without tokens.
    token: Option<String>,
    /// Scopes this caller holds: `read`, `write`, `admin`.
    #[schema(value_type = Vec<String>)]
    scopes: Vec<&'static str>,
    /// Whether the host requires a token.
    required: bool,
}

/// `GET /api/whoami`: the caller's token name and scopes, so that a client
/// (the dashboard) can tell what it may do before trying.
#[utoipa::path(get, path = "/whoami", tag = "operations",
    responses((status = 200, description = "The caller's token and its scopes (any valid token may ask)", body = super::auth::WhoAmI),
               (status = 401, body = super::error::ErrorResponse)))]
pub async fn whoami(caller: Option<axum::Extension<Caller>>) -> Json<WhoAmI> {
    Json(match caller {
        Some(axum::Extension(Caller(token))) => WhoAmI {
            token: Some(token.name),
            scopes: token.scopes.iter().map(|s| s.as_str()).collect(),
            required: true,
        },
        None => WhoAmI {
            token: None,
            scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
            required: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded_and_plus_stays() {
        assert_eq!(percent_decoded("ab%2Bc%2Fd%3D%3D"), "ab+c/d==");
        assert_eq!(percent_decoded("ab+c/d=="), "ab+c/d==");
        assert_eq!(percent_decoded("100%"), "100%", "not an escape");
        assert_eq!(percent_decoded("%zz%4"), "%zz%4");
        assert_eq!(percent_decoded("%ff"), "%ff", "not UTF-8 once decoded");
    }

    #[test]
    fn token_file_lines() {
        let mut t = Tokens::new(Some("all".into()));
        t.add_file("# apps\n\nviewer:read:abc\nbot: write , read :d:e:f\n")
            .unwrap();
        assert_eq!(t.find("abc").unwrap().scopes, vec![Scope::Read]);
        assert_eq!(t.find("d:e:f").unwrap().name, "bot");
        assert_eq!(t.find("all").unwrap().scopes, Scope::ALL.to_vec());
        assert!(t.find("ab").is_none());
        for (bad, want) in [
            ("x:read", "line 1: expected"),
            ("x:root:tok", "unknown scope \"root\""),
            ("viewer:read:zzz", "used twice"),
            ("other:read:abc", "already configured"),
            ("::tok", "expected"),
        ] {
            let err = t.clone().add_file(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn route_classes() {
        use Access::*;
        let cases = [
            (Method::GET, Admin, Some(Scope::Read)),
            (Method::HEAD, Write, Some(Scope::Read)),
            (Method::POST, Write, Some(Scope::Write)),
            (Method::DELETE, Write, Some(Scope::Admin)),
            (Method::POST, Admin, Some(Scope::Admin)),
            (Method::DELETE, Admin, Some(Scope::Admin)),
            (Method::GET, AnyToken, None),
            (Method::POST, AnyToken, None),
        ];
        for (method, access, want) in cases {
            assert_eq!(required_scope(&method, access), want, "{method} {access:?}");
        }
    }
}
