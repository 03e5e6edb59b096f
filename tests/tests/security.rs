//! The API token: refused when wrong or missing over HTTP and WebSocket,
//! accepted as a bearer header or (WebSockets) a query parameter; a host
//! refuses to expose its API beyond loopback without one; limits answer with
//! clear errors; foreign Host and Origin headers are refused. (REQ-SEC-1..3, 5)

use hive_tests::{hive_bin, Host, HostOpts};
use reqwest::Method;

const TOKEN: &str = "s3cret-api-token";
/// The body of every call: what a page would post.
const PAGE: &str = "from a page";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_is_required_everywhere() -> anyhow::Result<()> {
    let host = Host::start(HostOpts {
        extra_args: vec!["--api-token".into(), TOKEN.into()],
        ..Default::default()
    })
    .await?;
    let client = reqwest::Client::new();
    // /healthz stays open for probes.
    hive_tests::wait_for("healthy", || async {
        let r = client.get(host.url("/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;

    let r = client.get(host.url("/api/status")).send().await?;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = client
        .get(host.url("/api/status"))
        .bearer_auth("wrong")
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let r = client
        .post(host.url("/api/topics/t/publish"))
        .body("x")
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    let r = client
        .get(host.url("/api/status"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    let ws = host.url("/api/events").replacen("http", "ws", 1);
    assert_eq!(host.ws_status("", &[]).await?, 401, "WS without token");
    assert_eq!(
        host.ws_status("?token=wrong", &[]).await?,
        401,
        "WS with a wrong token"
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(format!("{ws}?token={TOKEN}")).await?;
    use futures::StreamExt;
    let first = stream.next().await.expect("a first frame")?;
    assert!(first.to_text()?.contains("\"daemon\""));
    Ok(())
}

/// A base64 token on the WebSocket, percent-encoded as a URL needs it (as
/// Python's `quote` and browsers do): let in, and so is the raw spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_encoded_query_token_is_accepted() -> anyhow::Result<()> {
    const B64: &str = "b64+tok/en==";
    let host = healthy_host(&[], Some(B64)).await?;
    let ws = host.url("/api/events").replacen("http", "ws", 1);
    for query in ["?token=b64%2Btok%2Fen%3D%3D", "?token=b64+tok/en=="] {
        let connected = tokio_tungstenite::connect_async(format!("{ws}{query}")).await;
        assert!(connected.is_ok(), "{query} refused: {:?}", connected.err());
    }
    assert_eq!(host.ws_status("?token=b64%2Btok", &[]).await?, 401);
    Ok(())
}

#[tokio::test]
async fn non_loopback_bind_without_token_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let out = tokio::process::Command::new(hive_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", "0.0.0.0:0", "--no-mdns"])
        .arg("--daemon-bin")
        .arg(hive_tests::daemon_bin())
        .output()
        .await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without an API token"), "stderr: {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_with_clear_errors() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let client = reqwest::Client::new();
    let r = client
        .post(host.url("/api/topics/t/publish"))
        .body(vec![0u8; 1024 * 1024 + 1])
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    let long = "x".repeat(300);
    let r = client
        .post(host.url(&format!("/api/topics/{long}/publish")))
        .body("x")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let r = client
        .post(host.url("/api/topics/a%01b/subscribe"))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let r = client
        .post(host.url("/api/topics/t/publish"))
        .header("Idempotency-Key", "has space")
        .body("x")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    // Still serving.
    assert_eq!(host.status().await?["daemon"]["state"], "running");
    Ok(())
}

/// The port of a host's API, for `Host` and `Origin` values.
fn api_port(host: &Host) -> u16 {
    host.api
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API URL ends with its port")
}

async fn outbox_depth(host: &Host, token: Option<&str>) -> anyhow::Result<u64> {
    let r = host
        .api_call(Method::GET, "/api/outbox", "", &[], token)
        .await?;
    anyhow::ensure!(r.status == 200, "GET /api/outbox: {} {}", r.status, r.body);
    r.body["depth"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no depth in {}", r.body))
}

/// A healthy host started with `args`, and `--api-token` when `token` is set.
async fn healthy_host(args: &[&str], token: Option<&str>) -> anyhow::Result<Host> {
    let mut extra: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if let Some(t) = token {
        extra.extend(["--api-token".to_string(), t.to_string()]);
    }
    let host = Host::start(HostOpts {
        extra_args: extra,
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    Ok(host)
}

/// DNS rebinding: requests that name a host other than this API are
/// refused, over HTTP and WebSocket, whether or not a token is configured
/// and presented. (REQ-SEC-4)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_header_is_refused() -> anyhow::Result<()> {
    for token in [None, Some(TOKEN)] {
        let host = healthy_host(&["--allowed-host", "hive.example"], token).await?;
        let port = api_port(&host);
        let evil = format!("evil.example:{port}");
        let get = Method::GET;
        let post = Method::POST;

        let r = host
            .api_call(get.clone(), "/api/status", PAGE, &[("host", &evil)], token)
            .await?;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "token {token:?}");
        let status = host
            .api_call(
                post.clone(),
                "/api/topics/x/publish",
                PAGE,
                &[("host", &evil)],
                token,
            )
            .await?
            .status;
        assert_eq!(status, 403);
        let status = host
            .api_call(
                post.clone(),
                "/api/topics/x/subscribe",
                PAGE,
                &[("host", &evil)],
                token,
            )
            .await?
            .status;
        assert_eq!(status, 403);
        let status = host
            .api_call(get.clone(), "/", PAGE, &[("host", &evil)], token)
            .await?
            .status;
        assert_eq!(
            status, 403,
            "the dashboard itself must not load under a rebound name"
        );
        // Same name, wrong port: another origin.
        let status = host
            .api_call(
                get.clone(),
                "/api/status",
                PAGE,
                &[("host", "localhost:1")],
                token,
            )
            .await?
            .status;
        assert_eq!(status, 403);
        let ws_query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        assert_eq!(host.ws_status(&ws_query, &[("host", &evil)]).await?, 403);
        assert_eq!(
            outbox_depth(&host, token).await?,
            0,
            "a refused publish was queued"
        );
        let topics = host
            .api_call(get.clone(), "/api/topics", PAGE, &[], token)
            .await?;
        assert_eq!(topics.status, 200);

        // The API's own names pass.
        for name in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            "hive.example".into(),
            format!("HIVE.example:{port}"),
        ] {
            let status = host
                .api_call(get.clone(), "/api/status", PAGE, &[("host", &name)], token)
                .await?
                .status;
            assert_eq!(status, 200, "Host {name} refused");
        }
        assert_eq!(
            host.ws_status(&ws_query, &[("host", &format!("localhost:{port}"))])
                .await?,
            101
        );
        // Probes may use any name.
        let status = host
            .api_call(get.clone(), "/healthz", PAGE, &[("host", &evil)], None)
            .await?
            .status;
        assert_eq!(status, 200);
    }
    Ok(())
}

/// Cross-origin writes: a page on another origin cannot publish, subscribe
/// or open the event stream, with or without a token; the API's own origin,
/// an `--allowed-origin` and clients that send no Origin can. (REQ-SEC-4)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_cannot_change_state_or_stream() -> anyhow::Result<()> {
    const APP: &str = "http://app.example:3000";
    for token in [None, Some(TOKEN)] {
        let host = healthy_host(&["--allowed-origin", APP], token).await?;
        let port = api_port(&host);
        let own = format!("http://127.0.0.1:{port}");
        let post = Method::POST;
        let ws_query = token.map(|t| format!("?token={t}")).unwrap_or_default();

        for origin in [
            "http://evil.example:8000",
            "null",
            "http://127.0.0.1:1",
            "http://localhost",
        ] {
            let r = host
                .api_call(
                    post.clone(),
                    "/api/topics/x/publish",
                    PAGE,
                    &[("origin", origin)],
                    token,
                )
                .await?;
            assert_eq!(
                (r.status, r.code()),
                (403, "forbidden"),
                "publish from {origin}, token {token:?}"
            );
            let status = host
                .api_call(
                    post.clone(),
                    "/api/topics/x/subscribe",
                    PAGE,
                    &[("origin", origin)],
                    token,
                )
                .await?
                .status;
            assert_eq!(status, 403, "subscribe from {origin}");
            let status = host
                .api_call(
                    Method::DELETE,
                    "/api/nodes/n1",
                    PAGE,
                    &[("origin", origin)],
                    token,
                )
                .await?
                .status;
            assert_eq!(status, 403, "DELETE from {origin}");
            assert_eq!(
                host.ws_status(&ws_query, &[("origin", origin)]).await?,
                403,
                "WS from {origin}"
            );
        }
        assert_eq!(
            outbox_depth(&host, token).await?,
            0,
            "a refused publish was queued"
        );
        let topics = host
            .api_call(Method::GET, "/api/topics", "", &[], token)
            .await?
            .body;
        assert!(
            !topics.to_string().contains("\"x\""),
            "a refused subscribe took effect: {topics}"
        );

        // A read from a foreign page is harmless (CORS keeps it from the
        // page) and stays allowed; no CORS header is sent to it.
        let evil = [("origin", "http://evil.example:8000")];
        let r = host
            .api_call(Method::GET, "/api/status", "", &evil, token)
            .await?;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("access-control-allow-origin").is_none());

        // The dashboard's own origin, an allowed origin, and no Origin at all.
        for headers in [
            vec![("origin", own.as_str())],
            vec![("origin", APP)],
            vec![],
        ] {
            let status = host
                .api_call(post.clone(), "/api/topics/x/publish", PAGE, &headers, token)
                .await?
                .status;
            assert_eq!(status, 200, "publish with {headers:?}");
            assert_eq!(
                host.ws_status(&ws_query, &headers).await?,
                101,
                "WS with {headers:?}"
            );
        }
        assert_eq!(outbox_depth(&host, token).await?, 3);
        // The allowed origin can read answers (CORS) and gets its preflight.
        let r = reqwest::Client::new()
            .request(Method::OPTIONS, host.url("/api/topics/x/publish"))
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await?;
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["access-control-allow-origin"], APP);
    }
    Ok(())
}

/// Audit rows 44 (body cap) and 60: the size limit holds for publish and
/// send alike, at its boundary, with `--max-message-size`, and with the JSON
/// error code; a body over the 2 MiB cap is refused before it is read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_limits_hold_for_publish_and_send() -> anyhow::Result<()> {
    const PEER: &str = "12D3KooWLRPJAA5o6i6Mo1YjbGrQ8DEKcmm3zVwS3MLF2Tk1aXBu";
    let send = format!("/api/peers/{PEER}/send?wait=0");
    let default = Host::start(HostOpts::default()).await?;
    let small = Host::start(HostOpts {
        extra_args: vec!["--max-message-size".into(), "1000".into()],
        ..Default::default()
    })
    .await?;
    default.wait_healthy().await?;
    small.wait_healthy().await?;
    let client = reqwest::Client::new();
    let post = |host: &Host, path: &str, len: usize| {
        client.post(host.url(path)).body(vec![b'x'; len]).send()
    };
    let mib = 1024 * 1024;
    for (host, limit) in [(&default, mib), (&small, 1000)] {
        for path in ["/api/topics/t/publish", send.as_str()] {
            let r = post(host, path, limit).await?;
            assert!(
                r.status().is_success(),
                "{path}, {limit} bytes: {}",
                r.status()
            );
            let r = post(host, path, limit + 1).await?;
            assert_eq!(r.status(), 413, "{path}, {} bytes", limit + 1);
            let body: serde_json::Value = r.json().await?;
            assert_eq!(body["error"]["code"], "payload_too_large", "{path}");
        }
    }
    for path in ["/api/topics/t/publish", send.as_str()] {
        let r = post(&default, path, 2 * mib + 1).await?;
        assert_eq!(r.status(), 413, "{path}: a body over the 2 MiB cap");
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
    assert_eq!(default.status().await?["daemon"]["state"], "running");
    assert_eq!(small.status().await?["daemon"]["state"], "running");
    Ok(())
}
