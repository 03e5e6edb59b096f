//! A node that was away gets what it missed (issue 13, REQ-LOSS-7): hosts A,
//! B and C share a topic; B, the node the others were bootstrapped from, goes
//! away (kill -9 of its host, SIGTERM of its host, or kill -9 of its daemon
//! alone); A publishes 300 messages, which C stores; B comes back on its data
//! directory. Gossip
//! never repeats a message, so only `/hive/sync/1.0.0` can bring them: B's
//! history must hold all 300, once each, with no dial and no republish by
//! the test.

use std::collections::BTreeMap;

use hive_tests::{wait_for, Host, HostOpts};
use serde_json::Value;

const TOPIC: &str = "away";
const MISSED: usize = 300;

/// Every stored message of `TOPIC` on `host`: payload -> count.
async fn stored(host: &Host) -> anyhow::Result<BTreeMap<String, usize>> {
    Ok(hive_tests::histogram(host.stored_payloads(TOPIC).await?))
}

fn missed(counts: &BTreeMap<String, usize>) -> usize {
    (0..MISSED)
        .filter(|i| !counts.contains_key(&format!("while B was away {i}")))
        .count()
}

/// How B goes away.
#[derive(Clone, Copy, Debug)]
enum Away {
    /// kill -9 of B's host (its daemon exits with it), started again later.
    HostKilled,
    /// SIGTERM of B's host, started again later.
    HostStopped,
    /// kill -9 of B's daemon only: its host restarts it at once.
    DaemonKilled,
}

async fn three_hosts() -> anyhow::Result<(Host, Host, Host)> {
    // B first: the others bootstrap from it, as from a node a user set up.
    let [b, a, c]: [Host; 3] = hive_tests::hosts_on_topic(3, TOPIC)
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("not three hosts"))?;
    // B has taken part: one message before it goes.
    a.publish(TOPIC, b"before".to_vec()).await?;
    wait_for("B stored the first message", || async {
        stored(&b).await.ok()?.contains_key("before").then_some(())
    })
    .await?;
    Ok((a, b, c))
}

/// B goes away as `away` says while A publishes; returns B once it is back.
async fn away_while_a_publishes(a: &Host, mut b: Host, away: Away) -> anyhow::Result<Host> {
    let restart = match away {
        Away::DaemonKilled => {
            let pid = b.daemon_pid().await?.expect("B's daemon pid");
            hive_tests::signal(pid, libc::SIGKILL);
            false
        }
        Away::HostKilled => {
            b.kill9();
            let _ = b.child.wait().await;
            true
        }
        Away::HostStopped => {
            b.terminate().await?;
            true
        }
    };
    for i in 0..MISSED {
        a.publish(TOPIC, format!("while B was away {i}").into_bytes())
            .await?;
    }
    if !restart {
        return Ok(b);
    }
    let data = std::mem::replace(&mut b.data_dir, tempfile::TempDir::new()?);
    drop(b);
    let b = Host::start_in(HostOpts::default(), data).await?;
    b.wait_healthy().await?;
    Ok(b)
}

async fn catches_up(away: Away) -> anyhow::Result<()> {
    let (a, b, c) = three_hosts().await?;
    let b = away_while_a_publishes(&a, b, away).await?;
    wait_for("C stored all of them", || async {
        (missed(&stored(&c).await.ok()?) == 0).then_some(())
    })
    .await?;
    let got = wait_for("B caught up", || async {
        let counts = stored(&b).await.ok()?;
        (missed(&counts) == 0).then_some(counts)
    })
    .await;
    let counts = match got {
        Ok(counts) => counts,
        Err(e) => {
            let counts = stored(&b).await?;
            anyhow::bail!(
                "{away:?}: {e}: B has {} of {MISSED}",
                MISSED - missed(&counts)
            );
        }
    };
    assert!(counts.values().all(|n| *n == 1), "B stored one twice");
    assert_eq!(counts.len(), MISSED + 1, "B: only the 301 messages of A");
    // C met B again too and asked it in turn: nothing new for C.
    assert_eq!(stored(&c).await?.len(), MISSED + 1);
    shows_the_catch_up(&a, &b, &c).await?;
    println!("catch-up ({away:?}): B, back, has all {MISSED} it missed");
    Ok(())
}

/// What B fetched shows in its status and metrics, and A or C (whoever B
/// asked) counted the pages it served.
async fn shows_the_catch_up(a: &Host, b: &Host, c: &Host) -> anyhow::Result<()> {
    let (a_id, c_id) = (a.peer_id().await?, c.peer_id().await?);
    // Some may have come by gossip once B was back; each fetched one counts
    // once, though A and C both serve it.
    let sync = wait_for("B's status shows what it fetched", || async {
        let sync = b.status().await.ok()?["sync"].clone();
        (sync["fetched"].as_u64()? >= 1 && sync["behind"] == 0).then_some(sync)
    })
    .await?;
    let fetched = sync["fetched"].as_u64().unwrap_or(0);
    assert!(
        fetched <= MISSED as u64,
        "B counted {fetched} fetched of the {MISSED} it missed: {sync}"
    );
    let peers: Vec<&str> = sync["peers"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["peer_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        peers.iter().all(|p| *p == a_id || *p == c_id) && !peers.is_empty(),
        "B's sync peers are A and C: {sync}"
    );
    assert_eq!(sync["rejected"], 0, "honest peers: {sync}");
    let served = |h: Value| h["sync"]["served"].as_u64().unwrap_or(0);
    let served = served(a.status().await?) + served(c.status().await?);
    assert!(served >= 1, "A or C served B's catch-up");
    wait_for("B's metrics count what it fetched", || async {
        (b.counter("sync_fetched").await.ok()? >= fetched).then_some(())
    })
    .await?;
    let signals = &b.status().await?["signals"];
    assert!(
        signals["catching_up"].is_number(),
        "τ has the signal: {signals}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_host_was_killed_gets_what_it_missed() -> anyhow::Result<()> {
    catches_up(Away::HostKilled).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_host_was_stopped_gets_what_it_missed() -> anyhow::Result<()> {
    catches_up(Away::HostStopped).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_daemon_was_killed_gets_what_it_missed() -> anyhow::Result<()> {
    catches_up(Away::DaemonKilled).await
}
