//! A client that reconnects with its cursor misses nothing and sees nothing
//! twice; the stored history pages by topic. (REQ-LOSS-2)

use std::time::Duration;

use hive_tests::{event_bytes, Host, HostOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_cursor_replays_exactly_what_was_missed() -> anyhow::Result<()> {
    let topic = "resume";
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    b.subscribe(topic).await?;
    a.subscribe(topic).await?;
    a.wait_topic_peers(topic, 1).await?;

    let mut events = b.events().await?;
    for i in 0..50 {
        a.publish(topic, format!("first {i}").into_bytes()).await?;
    }
    let first = events.collect("message", 50, Duration::from_secs(60)).await;
    assert_eq!(first.len(), 50);
    let cursor = first
        .iter()
        .filter_map(|e| e["cursor"].as_u64())
        .max()
        .expect("messages carry a cursor");
    events.close().await;

    // Published while the client is away.
    for i in 0..70 {
        a.publish(topic, format!("second {i}").into_bytes()).await?;
    }
    // Wait until B's host has stored them all (by paging its history).
    let stored = hive_tests::wait_for("B to store the second batch", || async {
        let page = b
            .get(&format!(
                "/api/messages?topic={topic}&after={cursor}&limit=1000"
            ))
            .await
            .ok()?;
        let n = page["messages"].as_array()?.len();
        (n >= 70).then_some(page)
    })
    .await?;
    assert_eq!(stored["messages"].as_array().unwrap().len(), 70);

    let url = format!(
        "{}/api/events?after={cursor}",
        b.api.replacen("http", "ws", 1)
    );
    let (ws, _) = tokio_tungstenite::connect_async(&url).await?;
    let mut resumed = hive_tests::EventStream::from_ws(ws);
    let replay = resumed
        .collect("message", 70, Duration::from_secs(30))
        .await;
    let texts: Vec<String> = replay
        .iter()
        .map(|e| String::from_utf8(event_bytes(e).unwrap()).unwrap())
        .collect();
    let expected: Vec<String> = (0..70).map(|i| format!("second {i}")).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "replay must be exactly the missed messages");
    // Cursors increase strictly: nothing twice.
    let cursors: Vec<u64> = replay.iter().filter_map(|e| e["cursor"].as_u64()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert!(cursors[0] > cursor);

    // Live again after the replay.
    a.publish(topic, b"live".to_vec()).await?;
    let live = resumed.collect("message", 1, Duration::from_secs(30)).await;
    assert_eq!(event_bytes(&live[0])?, b"live");
    Ok(())
}
