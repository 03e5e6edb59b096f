//! Retention of received messages, end to end (audit row 42): a host run
//! with `--retention-count` keeps only the newest, and a client resuming
//! with a cursor older than what is kept gets the rows still kept, oldest
//! first, the jump in cursors showing what was pruned
//! (docs/01_ARCHITECTURE.md, "Inbox and cursors"). (REQ-LOSS-2)

use std::time::Duration;

use hive_tests::{event_bytes, two_connected_hosts, wait_for, Host, HostOpts};

const SENT: usize = 10;
const KEPT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_behind_the_retention_gets_what_is_kept_and_sees_the_jump(
) -> anyhow::Result<()> {
    let topic = "retention";
    let opts = HostOpts {
        extra_args: vec!["--retention-count".into(), KEPT.to_string()],
        ..HostOpts::default()
    };
    let (a, mut b) = two_connected_hosts(opts.clone()).await?;
    b.subscribe(topic).await?;
    a.subscribe(topic).await?;
    a.wait_topic_peers(topic, 1).await?;

    let mut events = b.events().await?;
    for i in 0..SENT {
        a.publish(topic, format!("m{i}").into_bytes()).await?;
    }
    let got = events
        .collect("message", SENT, Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), SENT);
    let mut seen: Vec<(u64, Vec<u8>)> = got
        .iter()
        .map(|e| {
            (
                e["cursor"].as_u64().expect("a cursor"),
                event_bytes(e).unwrap(),
            )
        })
        .collect();
    seen.sort();
    events.close().await;
    // The client's last cursor before it went away: the second message's.
    let behind = seen[1].0;

    // B's host restarts with the same flags; retention applies at start and
    // then every minute.
    b.terminate().await?;
    let data = std::mem::replace(&mut b.data_dir, tempfile::TempDir::new()?);
    drop(b);
    let b = Host::start_in(opts, data).await?;
    b.wait_healthy().await?;
    let kept = wait_for("B's host to prune down to the newest", || async {
        let page = b
            .get(&format!("/api/messages?topic={topic}&after=0&limit=100"))
            .await
            .ok()?;
        let rows = page["messages"].as_array()?.clone();
        (rows.len() == KEPT).then_some(rows)
    })
    .await?;
    let kept_cursors: Vec<u64> = kept.iter().filter_map(|r| r["cursor"].as_u64()).collect();
    let newest: Vec<u64> = seen[SENT - KEPT..].iter().map(|(c, _)| *c).collect();
    assert_eq!(kept_cursors, newest, "the newest {KEPT} are the ones kept");

    let mut resumed = b.events_after(behind).await?;
    let replay = resumed
        .collect("message", KEPT, Duration::from_secs(30))
        .await;
    let replayed: Vec<(u64, Vec<u8>)> = replay
        .iter()
        .map(|e| {
            (
                e["cursor"].as_u64().expect("a cursor"),
                event_bytes(e).unwrap(),
            )
        })
        .collect();
    assert_eq!(replayed, seen[SENT - KEPT..].to_vec(), "oldest kept first");
    assert!(
        replayed[0].0 > behind + 1,
        "the jump from {behind} to {} shows the pruned rows",
        replayed[0].0
    );
    Ok(())
}
