//! Nothing dropped silently (audit row 43): a direct message that cannot be
//! delivered within its time to live ends as an `expired` event, and one the
//! daemon refuses for good as a `failed` event, live on `/api/events` and
//! kept in `/api/messages?kind=...`.

use std::time::Duration;

use hive_tests::{wait_for, Host, HostOpts};

/// A valid Ed25519 peer id that no process of this test runs.
fn nobody() -> String {
    "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".to_string()
}

async fn kept(host: &Host, kind: &str, id: &str) -> Option<serde_json::Value> {
    let page = host
        .get(&format!("/api/messages?kind={kind}&after=0&limit=100"))
        .await
        .ok()?;
    page["messages"]
        .as_array()?
        .iter()
        .find(|row| row["id"] == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_direct_messages_end_as_expired_or_failed_events() -> anyhow::Result<()> {
    let host = Host::start(HostOpts {
        extra_args: vec!["--direct-ttl".into(), "2".into()],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    let mut events = host.events().await?;

    let to_nobody = host
        .post(
            &format!("/api/peers/{}/send?wait=0", nobody()),
            b"lost?".to_vec(),
        )
        .await?;
    let me = host.peer_id().await?;
    let to_myself = host
        .post(
            &format!("/api/peers/{me}/send?wait=0"),
            b"to myself".to_vec(),
        )
        .await?;
    let (expired_id, failed_id) = (
        to_nobody["id"].as_str().unwrap_or_default().to_string(),
        to_myself["id"].as_str().unwrap_or_default().to_string(),
    );

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let Some(ev) = events.next_within(Duration::from_secs(60)).await else {
            anyhow::bail!("no expired/failed event; saw {seen:?}");
        };
        if ev["type"] == "expired" || ev["type"] == "failed" {
            seen.push(ev);
        }
    }
    let find = |id: &str| seen.iter().find(|ev| ev["id"] == id).cloned();
    let expired = find(&expired_id).expect("an event for the message to nobody");
    assert_eq!(expired["type"], "expired", "{expired}");
    assert_eq!(expired["target"], nobody().as_str(), "{expired}");
    assert_eq!(expired["direct"], true, "{expired}");
    let failed = find(&failed_id).expect("an event for the message to itself");
    assert_eq!(failed["type"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("itself"),
        "the reason says why: {failed}"
    );
    // Kept, for a client that was not listening.
    wait_for("both kept in the inbox", || async {
        Some((
            kept(&host, "expired", &expired_id).await?,
            kept(&host, "failed", &failed_id).await?,
        ))
    })
    .await?;
    Ok(())
}
