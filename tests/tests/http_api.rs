//! The host's HTTP surface: status shape, health, metrics, clear errors on
//! bad input while the host keeps serving. (REQ-API-1..4)

use hive_tests::{Host, HostOpts};
use serde_json::Value;

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
    assert!(
        st["daemon"]["uptime_secs"]
            .as_f64()
            .is_some_and(|u| u >= 0.0),
        "{st}"
    );
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

/// Every operation `/openapi.json` documents is served (no 404 "no such
/// endpoint", no 405) with one of the statuses it documents, and `/metrics` is valid exposition text with every
/// family the operators' dashboards rely on, the daemon's libp2p ones
/// included. (REQ-OBS-*)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_routes_are_served_and_metrics_are_complete() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let me = host.peer_id().await?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(90))
        .build()?;

    let doc = host.get("/openapi.json").await?;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut served = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{topic}", "t")
            .replace("{peer_id}", &me)
            .replace("{id}", "n0");
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = host.url(&concrete);
            let request = match method {
                "get" => client.get(&url),
                "post" if concrete.ends_with("/send") => {
                    client.post(format!("{url}?wait=0")).body("x")
                }
                "post" if concrete.ends_with("/dial") => client
                    .post(&url)
                    .json(&serde_json::json!({"addr": "/ip4/127.0.0.1/tcp/1"})),
                "post" => client.post(&url).body(""),
                _ => client.delete(&url),
            };
            let r = request.send().await?;
            let status = r.status().as_u16();
            let body = r.text().await?;
            assert!(
                status != 405 && !(status == 404 && body.contains("no such endpoint")),
                "{method} {concrete} is documented but not served: {status} {body}"
            );
            // A valid request gets one of the answers its operation documents
            // (a panic's 500 or an undocumented 503 fails here).
            let documented: Vec<&String> = item[method]["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            assert!(
                documented
                    .iter()
                    .any(|code| code.as_str() == status.to_string()),
                "{method} {concrete} answered {status}, documented {documented:?}: {body}"
            );
            served += 1;
        }
    }
    assert!(served >= 30, "only {served} operations documented");

    // Traffic so that the per-op and per-kind families have samples.
    host.subscribe("m").await?;
    let metrics = client.get(host.url("/metrics")).send().await?;
    assert!(metrics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text")));
    let text = metrics.text().await?;
    let mut types = std::collections::BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "one # EOF, at the end");
    for line in &lines[..lines.len() - 1] {
        assert!(!line.is_empty(), "blank line in the exposition");
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap().to_owned();
            assert!(types.insert(name.clone()), "{name} declared twice");
        } else if !line.starts_with("# HELP ") && !line.starts_with("# UNIT ") {
            assert!(!line.starts_with('#'), "stray comment {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad name in {line}"
            );
        }
    }
    for family in [
        "hive_ipc_request_duration_seconds",
        "hive_messages",
        "hive_outbox_depth",
        "hive_daemon_restarts",
        "hive_daemon_resident_memory_bytes",
        "hive_daemon_cpu_seconds",
        "hive_peers",
        "hive_websocket_clients",
        "hive_tension",
        "hive_tension_signal",
        "libp2p_swarm_connections_incoming",
    ] {
        assert!(types.contains(family), "family {family} missing: {types:?}");
    }
    let rss: f64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("hive_daemon_resident_memory_bytes "))
        .unwrap()
        .parse()?;
    assert!(rss > 1e6, "daemon RSS {rss}");
    // Every signal of the documented formula (docs/01_ARCHITECTURE.md,
    // "System tension"), each in /api/tension and in /metrics, and no signal
    // in /api/tension that /metrics leaves out (audit rows 34 and 31).
    let documented = [
        "daemon_down",
        "restarts",
        "ipc_latency",
        "outbox",
        "dropped_clients",
        "peers_below_target",
        "backlog",
        "children_down",
        "catching_up",
        "peer_refusals",
    ];
    let tension: Value = client
        .get(host.url("/api/tension"))
        .send()
        .await?
        .json()
        .await?;
    let served: std::collections::BTreeSet<&str> = tension["signals"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let documented_set: std::collections::BTreeSet<&str> = documented.into_iter().collect();
    assert_eq!(served, documented_set, "/api/tension's signals: {tension}");
    for signal in documented {
        assert!(
            text.contains(&format!("hive_tension_signal{{signal=\"{signal}\"}}")),
            "{signal} missing from /metrics"
        );
    }

    // A request id given by the caller comes back; one is made otherwise.
    let r = client
        .get(host.url("/api/status"))
        .header("x-request-id", "trace-me-1")
        .send()
        .await?;
    assert_eq!(r.headers()["x-request-id"], "trace-me-1");
    let r = client.get(host.url("/api/status")).send().await?;
    assert_eq!(r.headers()["x-request-id"].len(), 16);
    Ok(())
}
