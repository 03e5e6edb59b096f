//! A client that reconnects with its cursor misses nothing and sees nothing
//! twice; the stored history pages by topic. (REQ-LOSS-2)

use std::time::Duration;

use hive_tests::{event_bytes, two_connected_hosts, HostOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_cursor_replays_exactly_what_was_missed() -> anyhow::Result<()> {
    let topic = "resume";
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
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

    let mut resumed = b.events_after(cursor).await?;
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

/// The replay-to-live hand-off under traffic (audit row 19): the client
/// leaves and comes back with its cursor while A is still publishing 2,000
/// messages over two topics, so messages arrive during the replay. It must
/// end with each of the 2,000 exactly once. Then the stored history of one
/// topic, paged 50 at a time, holds exactly that topic's 1,000, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_while_messages_arrive_misses_none_and_pages_by_topic() -> anyhow::Result<()> {
    const EACH: usize = 1000;
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
    let a = std::sync::Arc::new(a);
    for t in ["one", "two"] {
        b.subscribe(t).await?;
        a.subscribe(t).await?;
        a.wait_topic_peers(t, 1).await?;
    }
    let mut events = b.events().await?;
    let publisher = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                for t in ["one", "two"] {
                    a.publish(t, format!("{t} {i}").into_bytes()).await?;
                }
            }
            anyhow::Ok(())
        })
    };
    let first = events
        .collect("message", 300, Duration::from_secs(60))
        .await;
    events.close().await;
    let cursor = first
        .iter()
        .filter_map(|e| e["cursor"].as_u64())
        .max()
        .unwrap_or(0);
    // Back at once: A is still publishing.
    let mut resumed = b.events_after(cursor).await?;
    let rest = resumed
        .collect("message", 2 * EACH - first.len(), Duration::from_secs(120))
        .await;
    publisher.await??;
    let extra = resumed.collect("message", 1, Duration::from_secs(2)).await;
    let all: Vec<String> = first
        .iter()
        .chain(&rest)
        .chain(&extra)
        .map(|e| String::from_utf8(event_bytes(e).unwrap_or_default()).unwrap_or_default())
        .collect();
    let counts = hive_tests::histogram(all.iter().cloned());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "seen twice: {twice:?}");
    assert_eq!(counts.len(), 2 * EACH, "distinct messages seen");
    println!(
        "resume under traffic: first {}, after the hand-off {}",
        first.len(),
        rest.len()
    );

    // Paging one topic while the other is there too.
    let mut paged = Vec::new();
    let mut after = 0u64;
    loop {
        let page = b
            .get(&format!("/api/messages?topic=one&after={after}&limit=50"))
            .await?;
        let rows = page["messages"].as_array().cloned().unwrap_or_default();
        assert!(rows.len() <= 50, "a page holds at most its limit");
        for row in &rows {
            assert_eq!(row["topic"], "one", "{row}");
            paged.push(String::from_utf8(event_bytes(row)?)?);
        }
        after = page["cursor"].as_u64().unwrap_or(after);
        if rows.is_empty() {
            break;
        }
    }
    let want: Vec<String> = (0..EACH).map(|i| format!("one {i}")).collect();
    assert_eq!(
        paged, want,
        "topic one's history, every message once, in order"
    );
    Ok(())
}
