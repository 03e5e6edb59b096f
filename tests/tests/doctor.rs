//! `hive doctor` says what is wrong and what to do (issue 15): against a
//! healthy running host, a bootstrap peer that is down, a bootstrap address
//! whose peer id is not the one answering there, and a data directory that
//! cannot be written (a path under a regular file: root, which CI runs as,
//! may write anywhere else).

use hive_tests::{hive_bin, Host, HostOpts};
use serde_json::Value;

async fn doctor(args: &[&str]) -> anyhow::Result<(bool, Value)> {
    let out = tokio::process::Command::new(hive_bin())
        .arg("doctor")
        .arg("--json")
        .args(args)
        .output()
        .await?;
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        out.status.success(),
        report["ok"] == true,
        "exit status and report agree: {report}"
    );
    Ok((out.status.success(), report))
}

fn check<'a>(report: &'a Value, name_starts: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["name"].as_str().unwrap_or("").starts_with(name_starts))
        })
        .unwrap_or_else(|| panic!("no {name_starts} check in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_host_and_names_each_problem() -> anyhow::Result<()> {
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    let data = a.data_dir.path().to_string_lossy().to_string();
    let http = a.api.trim_start_matches("http://").to_string();
    let (ok, report) = doctor(&["--api", &a.api, "--data-dir", &data, "--http", &http]).await?;
    assert!(ok, "a healthy host: {report}");
    assert_eq!(check(&report, "running host")["status"], "ok");
    assert_eq!(check(&report, "listen port")["status"], "ok", "{report}");
    // On loopback, with no relay: honest about it, with the fix.
    let reach = check(&report, "reachability");
    assert_eq!(reach["status"], "warn", "{reach}");
    assert!(
        reach["fix"].as_str().unwrap_or("").contains("--relay"),
        "{reach}"
    );

    // A bootstrap peer that is down: the port refuses.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let b = Host::start(HostOpts::default()).await?;
    b.wait_healthy().await?;
    let b_peer = b.peer_id().await?;
    let down = format!("/ip4/127.0.0.1/tcp/{closed}/p2p/{b_peer}");
    // B's real address, but with A's peer id: someone else answers there.
    let b_port = b.first_listen_addr().await?;
    let b_port = b_port
        .split("/tcp/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("0");
    let a_peer = a.peer_id().await?;
    let impostor = format!("/ip4/127.0.0.1/tcp/{b_port}/p2p/{a_peer}");
    let (ok, report) = doctor(&[
        "--api",
        &a.api,
        "--data-dir",
        &data,
        "--http",
        &http,
        "--bootstrap",
        &down,
        "--bootstrap",
        &impostor,
    ])
    .await?;
    assert!(!ok, "{report}");
    let down_check = check(&report, &format!("bootstrap {down}"));
    assert_eq!(down_check["status"], "fail", "{down_check}");
    assert!(
        down_check["detail"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect"),
        "{down_check}"
    );
    assert!(down_check["fix"].is_string());
    let impostor_check = check(&report, &format!("bootstrap {impostor}"));
    assert_eq!(impostor_check["status"], "fail", "{impostor_check}");

    // A data directory under a regular file.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"")?;
    let bad = file.join("data");
    let (ok, report) = doctor(&[
        "--data-dir",
        &bad.to_string_lossy(),
        "--http",
        "127.0.0.1:0",
        "--api",
        "http://127.0.0.1:9",
    ])
    .await?;
    assert!(!ok, "{report}");
    let data_check = check(&report, "data directory");
    assert_eq!(data_check["status"], "fail", "{data_check}");
    assert!(data_check["fix"]
        .as_str()
        .unwrap_or("")
        .contains("--data-dir"));
    Ok(())
}
