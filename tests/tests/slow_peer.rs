//! One slow peer holds up only its own queue (docs/01_ARCHITECTURE.md,
//! Outbox: "one in flight per peer"). Host A sends direct messages to B and
//! to C while C's daemon is stopped (SIGSTOP: its connection stays open and
//! answers nothing, the worst kind of slow). Every message to B must arrive
//! while C's are still waiting; after SIGCONT, C gets all of its own, in
//! order. (audit row 48, REQ-LOSS-9)

use std::time::Duration;

use hive_tests::{event_bytes, signal, Host, HostOpts};

const EACH: usize = 50;

async fn send_queued(a: &Host, to: &str, tag: &str) -> anyhow::Result<()> {
    for i in 0..EACH {
        let answer = a
            .post(
                &format!("/api/peers/{to}/send?wait=0"),
                format!("{tag} {i}").into_bytes(),
            )
            .await?;
        assert!(answer["id"].is_string(), "queued: {answer}");
    }
    Ok(())
}

fn texts(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|ev| String::from_utf8(event_bytes(ev).unwrap_or_default()).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peer_does_not_hold_up_another() -> anyhow::Result<()> {
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    let a_addr = a.first_listen_addr().await?;
    let mut peers = Vec::new();
    for _ in 0..2 {
        let h = Host::start(HostOpts {
            bootstrap: vec![a_addr.clone()],
            ..Default::default()
        })
        .await?;
        h.wait_healthy().await?;
        peers.push(h);
    }
    let (b, c) = (&peers[0], &peers[1]);
    let (b_peer, c_peer) = (b.peer_id().await?, c.peer_id().await?);
    // Both connected to A: one message each arrives.
    for p in [&b_peer, &c_peer] {
        let first = a
            .post(&format!("/api/peers/{p}/send"), b"hello".to_vec())
            .await?;
        assert_eq!(first["acknowledged"], true, "{first}");
    }
    let (mut b_events, mut c_events) = (b.events().await?, c.events().await?);
    let c_daemon = c.daemon_pid().await?.expect("C's daemon pid");
    signal(c_daemon, libc::SIGSTOP);

    // C's first: if its queue held up B's, B's would wait behind them.
    send_queued(&a, &c_peer, "to C").await?;
    send_queued(&a, &b_peer, "to B").await?;
    let got_b = b_events
        .collect("direct", EACH, Duration::from_secs(60))
        .await;
    let waiting = a.get("/api/outbox").await?;
    signal(c_daemon, libc::SIGCONT);
    assert_eq!(
        texts(&got_b),
        (0..EACH).map(|i| format!("to B {i}")).collect::<Vec<_>>(),
        "every message to B, in order, while C was stopped"
    );
    let depth = waiting["depth"].as_u64().unwrap_or_default();
    assert!(
        depth >= 1,
        "C's messages were still waiting when B had all of its own: {waiting}"
    );

    let got_c = c_events
        .collect("direct", EACH, Duration::from_secs(120))
        .await;
    assert_eq!(
        texts(&got_c),
        (0..EACH).map(|i| format!("to C {i}")).collect::<Vec<_>>(),
        "C gets its own, in order, once it runs again"
    );
    Ok(())
}
