//! The host's HTTP surface: status shape, health, metrics, clear errors on
//! bad input while the host keeps serving. (REQ-API-1..4)

use hive_tests::{Host, HostOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_health_metrics_and_errors() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let st = host.status().await?;
    let peer = st["peer_id"].as_str().unwrap();
    assert!(!peer.is_empty());
    assert_eq!(st["daemon"]["state"], "running");
    assert!(st["daemon"]["pid"].as_i64().is_some());
    assert_eq!(st["daemon"]["restarts"], 0);
    assert_eq!(st["peers"], 0);
    let tension = st["tension"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&tension), "{tension}");
    for a in st["listen_addrs"].as_array().unwrap() {
        assert!(a.as_str().unwrap().ends_with(&format!("/p2p/{peer}")));
    }

    let client = reqwest::Client::new();
    let metrics = client.get(host.url("/metrics")).send().await?;
    assert!(metrics.status().is_success());
    let text = metrics.text().await?;
    assert!(text.contains("hive_tension"), "{text}");

    // Bad input gets clear errors...
    let r = client
        .post(host.url("/api/dial"))
        .json(&serde_json::json!({"addr": "nonsense"}))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "bad_args", "{body}");

    let r = client
        .post(host.url("/api/peers/not-a-peer-id/send"))
        .body("x")
        .send()
        .await?;
    assert_eq!(r.status(), 400);

    let r = client
        .post(host.url("/api/dial"))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await?;
    assert!(r.status().is_client_error());

    // ...and the host keeps serving.
    let st = host.status().await?;
    assert_eq!(st["daemon"]["state"], "running");
    assert_eq!(st["daemon"]["restarts"], 0);
    Ok(())
}
