//! The API token: refused when wrong or missing over HTTP and WebSocket,
//! accepted as a bearer header or (WebSockets) a query parameter; a host
//! refuses to expose its API beyond loopback without one; limits answer with
//! clear errors. (REQ-SEC-1..3)

use hive_tests::{hive_bin, Host, HostOpts};

const TOKEN: &str = "s3cret-api-token";

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
    assert!(
        tokio_tungstenite::connect_async(&ws).await.is_err(),
        "WS without token accepted"
    );
    assert!(
        tokio_tungstenite::connect_async(format!("{ws}?token=wrong"))
            .await
            .is_err(),
        "WS with a wrong token accepted"
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(format!("{ws}?token={TOKEN}")).await?;
    use futures::StreamExt;
    let first = stream.next().await.expect("a first frame")?;
    assert!(first.to_text()?.contains("\"daemon\""));
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
