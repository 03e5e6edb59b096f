//! API tokens with scopes (`--api-tokens-file`): every documented operation
//! needs a token, and each route class needs its scope. (REQ-SEC-1, REQ-SEC-6)

use hive_tests::api::ApiAnswer;
use hive_tests::{hive_bin, Host, HostOpts};
use reqwest::Method;

const ALL: &str = "all-scopes-token";
const READ: &str = "reader-token";
const WRITE: &str = "writer-token";
const ADMIN: &str = "admin-token";
/// A syntactically valid peer id nobody runs.
const PEER: &str = "12D3KooWLRPJAA5o6i6Mo1YjbGrQ8DEKcmm3zVwS3MLF2Tk1aXBu";

async fn host_with_scoped_tokens() -> anyhow::Result<Host> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!(
            "# name:scopes:token\nviewer:read:{READ}\nbot:write:{WRITE}\n\nops:admin:{ADMIN}\n"
        ),
    )?;
    let host = Host::start(HostOpts {
        extra_args: vec![
            "--api-token".into(),
            ALL.into(),
            "--api-tokens-file".into(),
            file.path().display().to_string(),
        ],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    Ok(host)
}

/// Audit row 33: every operation in `/openapi.json`, called without a token,
/// gets 401, except the documented exemptions; the WebSocket handshake gets
/// an HTTP 401 (not just any failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_needs_a_token() -> anyhow::Result<()> {
    let host = host_with_scoped_tokens().await?;
    let ApiAnswer {
        status, body: doc, ..
    } = host
        .api_call(Method::GET, "/openapi.json", "", &[], None)
        .await?;
    assert_eq!(status, 200, "the API description is exempt");
    let exempt = ["/healthz"];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{topic}", "t")
            .replace("{peer_id}", PEER)
            .replace("{id}", "n0");
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let ApiAnswer { status, body, .. } =
                host.api_call(m, &concrete, "x", &[], None).await?;
            if exempt.contains(&path.as_str()) {
                assert_eq!(status, 200, "{method} {path} is exempt");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
            let ApiAnswer { status, .. } = host
                .api_call(
                    Method::from_bytes(method.to_uppercase().as_bytes())?,
                    &concrete,
                    "x",
                    &[],
                    Some("not-a-token"),
                )
                .await?;
            assert_eq!(status, 401, "{method} {path} with a wrong token");
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented?");
    assert_eq!(host.ws_status("", &[]).await?, 401);
    assert_eq!(host.ws_status("?token=wrong", &[]).await?, 401);
    assert_eq!(host.ws_status(&format!("?token={READ}"), &[]).await?, 101);
    Ok(())
}

/// Each route class answers only to tokens with its scope; the refusal is a
/// 403 that names the missing scope; the all-scopes token does everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_class_needs_its_scope() -> anyhow::Result<()> {
    let host = host_with_scoped_tokens().await?;
    // (method, path, body, scope, what the right token gets)
    let routes: &[(Method, &str, &str, &str, u16)] = &[
        (Method::GET, "/api/status", "", "read", 200),
        (Method::GET, "/api/peers", "", "read", 200),
        (Method::GET, "/api/topics", "", "read", 200),
        (Method::GET, "/api/messages", "", "read", 200),
        (Method::GET, "/api/outbox", "", "read", 200),
        (Method::GET, "/api/tension", "", "read", 200),
        (Method::GET, "/metrics", "", "read", 200),
        (Method::GET, "/api/nodes", "", "read", 200),
        (Method::GET, "/api/nodes/n0/status", "", "read", 200),
        (Method::POST, "/api/topics/s/subscribe", "", "write", 200),
        (Method::POST, "/api/topics/s/publish", "hi", "write", 200),
        (Method::POST, "/api/topics/s/unsubscribe", "", "write", 200),
        (
            Method::POST,
            "/api/nodes/n0/topics/s/publish",
            "hi",
            "write",
            200,
        ),
        (
            Method::POST,
            &format!("/api/peers/{PEER}/send?wait=0"),
            "hi",
            "write",
            202,
        ),
        (
            Method::POST,
            "/api/dial",
            r#"{"addr":"not a multiaddr"}"#,
            "admin",
            400,
        ),
        (Method::DELETE, "/api/nodes/n9", "", "admin", 404),
        (Method::POST, "/api/reproduce", "{not json", "admin", 400),
    ];
    let tokens = [("read", READ), ("write", WRITE), ("admin", ADMIN)];
    for (method, path, body, scope, ok) in routes {
        for (held, token) in tokens {
            let ApiAnswer {
                status,
                body: answer,
                ..
            } = host
                .api_call(method.clone(), path, body, &[], Some(token))
                .await?;
            if held == *scope {
                assert_eq!(status, *ok, "{method} {path} with a {held} token: {answer}");
            } else {
                assert_eq!(status, 403, "{method} {path} with a {held} token: {answer}");
                assert_eq!(answer["error"]["code"], "missing_scope");
                let message = answer["error"]["message"].as_str().unwrap_or("");
                assert!(
                    message.contains(&format!("lacks the {scope} scope")),
                    "{method} {path}: {message}"
                );
            }
        }
        let ApiAnswer {
            status,
            body: answer,
            ..
        } = host
            .api_call(method.clone(), path, body, &[], Some(ALL))
            .await?;
        assert_eq!(
            status, *ok,
            "{method} {path} with the --api-token token: {answer}"
        );
    }
    for (token, query, want) in [(READ, "", 101), (WRITE, "", 403), (ADMIN, "", 403)] {
        assert_eq!(
            host.ws_status(&format!("?token={token}{query}"), &[])
                .await?,
            want
        );
    }
    let ApiAnswer {
        status, body: me, ..
    } = host
        .api_call(Method::GET, "/api/whoami", "", &[], Some(READ))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(me["token"], "viewer");
    assert_eq!(me["scopes"], serde_json::json!(["read"]));
    let ApiAnswer { body: me, .. } = host
        .api_call(Method::GET, "/api/whoami", "", &[], Some(ALL))
        .await?;
    assert_eq!(me["scopes"], serde_json::json!(["read", "write", "admin"]));
    Ok(())
}

#[tokio::test]
async fn a_bad_tokens_file_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let file = dir.path().join("tokens");
    std::fs::write(&file, "viewer:read:abc\nbot:root:def\n")?;
    let out = tokio::process::Command::new(hive_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--http", "127.0.0.1:0", "--no-mdns"])
        .arg("--api-tokens-file")
        .arg(&file)
        .arg("--daemon-bin")
        .arg(hive_tests::daemon_bin())
        .output()
        .await?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: unknown scope") && err.contains("root"),
        "stderr: {err}"
    );
    Ok(())
}
