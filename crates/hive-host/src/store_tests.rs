//! Unit tests of the store (`store.rs`), kept apart to keep that file short.
use super::*;

#[tokio::test]
async fn the_outbox_survives_a_reopen_and_keys_are_not_queued_twice() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("hive.db");
    let store = Store::open(&path).unwrap();
    let a = store
        .push(OutKind::Publish, "t".into(), b"one".to_vec(), 60_000, None)
        .await
        .unwrap()
        .id;
    store
        .push(
            OutKind::Direct,
            "peer".into(),
            b"two".to_vec(),
            60_000,
            Some("k1".into()),
        )
        .await
        .unwrap();
    // The same idempotency key again: not queued twice.
    let again = store
        .push(
            OutKind::Direct,
            "peer".into(),
            b"two".to_vec(),
            60_000,
            Some("k1".into()),
        )
        .await
        .unwrap();
    assert!(!again.inserted && again.pending);
    assert_eq!(again.id, "k1");
    drop(store);

    let store = Store::open(&path).unwrap();
    let due = store.due(10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].id, a);
    assert_eq!(due[0].data, b"one");
    store.ack(due[0].seq).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 1);
    // A crash right after the ack: the recent window goes out again.
    assert_eq!(store.resend_recent().await.unwrap(), 1);
    assert_eq!(store.depth().await.unwrap(), 2);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The inbox drops a second copy and pages by kind and topic (audit row 25:
/// the filter was tested with one message row, so it could exclude
/// nothing).
#[tokio::test]
async fn the_inbox_dedupes_and_pages_by_kind_and_topic() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("hive.db")).unwrap();
    let put = |kind, id: &str, topic: Option<&str>| {
        let store = store.clone();
        let (id, topic) = (id.to_owned(), topic.map(str::to_owned));
        async move {
            store
                .insert_inbound(kind, id, topic, "p".into(), vec![1])
                .await
                .unwrap()
        }
    };
    let c1 = put(InKind::Message, "m", Some("t")).await;
    assert_eq!(
        put(InKind::Message, "m", Some("t")).await,
        None,
        "a second copy is dropped"
    );
    let c2 = put(InKind::Direct, "m", None).await;
    assert!(c1.is_some() && c2 > c1);
    assert_eq!(store.last_cursor(), c2.unwrap());
    let after = store
        .inbound_after(c1.unwrap(), None, None, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].kind, InKind::Direct);
    for i in 0..5 {
        put(InKind::Message, &format!("u{i}"), Some("u")).await;
        put(InKind::Message, &format!("t{i}"), Some("t")).await;
    }
    // Topic t in pages of 2: its six messages, in order, no u and no direct.
    let (mut seen, mut cursor) = (Vec::new(), 0);
    loop {
        let page = store
            .inbound_after(cursor, Some(InKind::Message), Some("t".into()), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2, "a page holds at most its limit");
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        seen.extend(page.iter().map(|r| (r.topic.clone(), r.id.clone())));
    }
    let want: Vec<(Option<String>, String)> = std::iter::once("m".to_owned())
        .chain((0..5).map(|i| format!("t{i}")))
        .map(|id| (Some("t".to_owned()), id))
        .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn the_depth_counter_agrees_with_the_rows() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("hive.db");
    let store = Store::open(&path).unwrap();
    let count = |store: &Store| {
        let conn = store.conn.lock().unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE acked_ms IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
    };
    for i in 0..10 {
        store
            .push(OutKind::Publish, "t".into(), vec![i], 60_000, None)
            .await
            .unwrap();
    }
    // A retried key is not a new row.
    for _ in 0..2 {
        store
            .push(
                OutKind::PublishPlain,
                "t".into(),
                b"k".to_vec(),
                60_000,
                Some("key".into()),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.depth().await.unwrap(), 11);
    let due = store.due(100).await.unwrap();
    store
        .ack_many(due.iter().take(6).map(|r| r.seq).collect())
        .await
        .unwrap();
    // Acknowledging twice changes nothing.
    store.ack(due[0].seq).await.unwrap();
    store.fail(due[7].seq).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), count(&store));
    assert_eq!(store.depth().await.unwrap(), 4);
    store.resend_recent().await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 10);
    drop(store);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.depth().await.unwrap(), 10);
    assert_eq!(count(&again), 10);
}

#[tokio::test]
async fn expired_rows_are_taken_out_for_reporting() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("hive.db")).unwrap();
    store
        .push(OutKind::Direct, "peer".into(), b"late".to_vec(), -1, None)
        .await
        .unwrap();
    store
        .push(
            OutKind::Direct,
            "peer".into(),
            b"fine".to_vec(),
            60_000,
            None,
        )
        .await
        .unwrap();
    let expired = store.sweep().await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].data, b"late");
    assert_eq!(store.depth().await.unwrap(), 1);
}

/// Retention (`--retention-count`, `--retention-secs`; audit: untested
/// limits). By count it keeps exactly the newest rows, whatever holes
/// duplicates left in the cursors (a duplicate uses up a cursor: the old
/// `cursor <= MAX(cursor) - N` kept fewer than N when there were any); by
/// age it drops what is older. A client resuming with a cursor older than
/// what is kept gets the rows still kept after it, and the jump in cursors
/// shows that some are gone (docs/01_ARCHITECTURE.md, "Inbox and cursors").
#[tokio::test]
async fn retention_keeps_the_newest_by_count_and_drops_by_age() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("hive.db")).unwrap();
    let mut first = None;
    for i in 0..10 {
        let id = format!("m{i}");
        let c = store
            .insert_inbound(
                InKind::Message,
                id.clone(),
                Some("t".into()),
                "p".into(),
                vec![1],
            )
            .await
            .unwrap();
        first = first.or(c);
        // A peer's second copy: dropped, but it uses up a cursor.
        let again = store
            .insert_inbound(InKind::Message, id, Some("t".into()), "p".into(), vec![1])
            .await
            .unwrap();
        assert_eq!(again, None);
    }
    let week = 7 * 24 * 3600 * 1000;
    store.prune(week, 5).await.unwrap();
    let kept = store.inbound_after(0, None, None, 100).await.unwrap();
    let ids: Vec<&str> = kept.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["m5", "m6", "m7", "m8", "m9"], "the newest 5, exactly");
    // Resuming from the first cursor ever given out: the kept rows, oldest
    // first, and a jump past the pruned ones.
    let first = first.unwrap();
    let resumed = store.inbound_after(first, None, None, 100).await.unwrap();
    assert_eq!(resumed.len(), 5);
    assert!(
        resumed[0].cursor > first + 1,
        "the jump shows the pruned rows"
    );
    // By age: the two oldest kept rows made ten days old.
    store
        .call(move |c| {
            c.execute(
                "UPDATE inbox SET received_ms = received_ms - 10 * 86400000
                 WHERE id IN ('m5', 'm6')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(store.prune(week, 1000).await.unwrap(), 2);
    let kept = store.inbound_after(0, None, None, 100).await.unwrap();
    assert_eq!(kept.len(), 3);
}

/// Admission counts a row once from its room's reservation to its ack: many
/// concurrent requests for a bound of 10 get exactly 10 rooms whatever the
/// commits do meanwhile (a committed row and its room were once counted
/// twice until the request dropped the room, refusing one request too
/// many: CI saw 9 of 10 admitted), a retried key gives its room back, and
/// an ack frees one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_counts_each_row_once_through_its_commit() {
    let dir = tempfile::TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    for round in 0..20 {
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let Some(room) = store.reserve(10) else {
                        return false;
                    };
                    let key = Some(format!("r{round}-{i}"));
                    store
                        .push_reserved(room, OutKind::Publish, "t".into(), vec![1], 60_000, key)
                        .await
                        .unwrap();
                    true
                })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 10, "round {round}");
        assert_eq!(store.depth().await.unwrap(), 10);
        assert!(store.reserve(10).is_none(), "full");
        let seqs: Vec<i64> = store
            .due(100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        store.ack_many(seqs).await.unwrap();
        assert_eq!(store.depth().await.unwrap(), 0);
    }
    // A retried key finds its row: the room goes back.
    let push_k = |room| {
        store.push_reserved(
            room,
            OutKind::Publish,
            "t".into(),
            vec![2],
            60_000,
            Some("k".into()),
        )
    };
    assert!(push_k(store.reserve(1).unwrap()).await.unwrap().inserted);
    let again = push_k(store.reserve(2).unwrap()).await.unwrap();
    assert!(!again.inserted);
    assert!(store.reserve(1).is_none(), "one row held, bound 1");
    assert!(
        store.reserve(2).is_some(),
        "the retry's room was given back"
    );
}
