//! `control-pubsub`: the pubsub sweep through go-libp2p-daemon's control
//! protocol (PUBLISH on a new connection each, up to `--window` at once, as
//! p2pclient does; SUBSCRIBE streams), for any daemon that speaks it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

use crate::args::{AnyResult, Args};
use crate::control;
use crate::sweep::{record, run_sweep, settle_within, Publisher, Received, Sweep};

pub async fn control_pubsub(args: &Args) -> AnyResult<Value> {
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let pub_sock = args.req("pub-sock");
    let mut sweep = Sweep::from(args);
    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    // Subscribe everywhere (the publisher too, and its stream is drained, not counted).
    let sub_socks: Vec<String> = args.req("sub-socks").split(',').map(String::from).collect();
    sweep.receivers = sub_socks.len() as u64;
    let socks: Vec<&String> = std::iter::once(&pub_sock).chain(sub_socks.iter()).collect();
    let mut streams = Vec::new();
    for (i, sock) in socks.iter().enumerate() {
        streams.push((i == 0, subscribe(sock, &topic).await?));
    }
    let mesh_ms = wait_for_mesh(&socks, &topic).await?;
    tokio::time::sleep(crate::sweep::MESH_SETTLE).await;
    for (own, conn) in streams {
        tokio::spawn(receive(conn, own, received.clone(), base));
    }
    let first_error = Arc::new(Mutex::new(None));
    let mut p = ControlPublisher {
        sock: pub_sock.into(),
        topic: topic.into(),
        window: Arc::new(Semaphore::new(args.num("window", 64))),
        pending: Arc::new(AtomicU64::new(0)),
        errors: Arc::new(AtomicU64::new(0)),
        first_error: first_error.clone(),
    };
    let mut out = run_sweep(&mut p, &received, base, &sweep).await?;
    out["mesh_ms"] = json!(mesh_ms);
    out["first_error"] = json!(first_error.lock().unwrap().clone());
    Ok(out)
}

/// A SUBSCRIBE stream on `sock`.
async fn subscribe(sock: &str, topic: &str) -> AnyResult<UnixStream> {
    let mut conn = UnixStream::connect(sock).await?;
    let request = control::pubsub_request(control::SUBSCRIBE, topic, None);
    conn.write_all(&request).await?;
    let resp = control::read_frame(&mut conn).await?;
    control::check(&resp).map_err(|e| format!("SUBSCRIBE on {sock}: {e}"))?;
    Ok(conn)
}

/// Until every daemon sees a peer in the topic (PUBSUB LIST_PEERS);
/// returns how long that took.
async fn wait_for_mesh(socks: &[&String], topic: &str) -> AnyResult<u128> {
    let setup = Instant::now();
    let request = control::pubsub_request(control::LIST_PEERS, topic, None);
    loop {
        let mut all = true;
        for sock in socks {
            let f = control::call(sock, &request).await?;
            let peers = f
                .iter()
                .find(|(k, _, _)| *k == 7)
                .map(|(_, _, b)| {
                    control::fields(b)
                        .iter()
                        .filter(|(k, _, _)| *k == 2)
                        .count()
                })
                .unwrap_or(0);
            all &= peers > 0;
        }
        if all {
            return Ok(setup.elapsed().as_millis());
        }
        if setup.elapsed() > Duration::from_secs(30) {
            return Err("the topic mesh did not form in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Count the messages of a SUBSCRIBE stream (the publisher's own: drained only).
async fn receive(mut conn: UnixStream, own: bool, received: Arc<Mutex<Received>>, base: Instant) {
    while let Ok(msg) = control::read_frame(&mut conn).await {
        if own {
            continue;
        }
        let data = control::fields(&msg)
            .into_iter()
            .find(|(k, _, _)| *k == 2)
            .map(|(_, _, b)| b)
            .unwrap_or_default();
        record(&received, base, &data);
    }
}

struct ControlPublisher {
    sock: Arc<str>,
    topic: Arc<str>,
    window: Arc<Semaphore>,
    pending: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl Publisher for ControlPublisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()> {
        let permit = self.window.clone().acquire_owned().await?;
        self.pending.fetch_add(1, Ordering::SeqCst);
        let framed = control::pubsub_request(control::PUBLISH, &self.topic, Some(&data));
        let (sock, pending, errors, first_error) = (
            self.sock.clone(),
            self.pending.clone(),
            self.errors.clone(),
            self.first_error.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = control::call(&sock, &framed).await {
                errors.fetch_add(1, Ordering::SeqCst);
                first_error.lock().unwrap().get_or_insert(e.to_string());
            }
            pending.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
        Ok(())
    }

    async fn settle(&mut self) -> AnyResult<u64> {
        let pending = self.pending.clone();
        settle_within(Duration::from_secs(30), || {
            pending.load(Ordering::SeqCst) > 0
        })
        .await;
        Ok(self.errors.load(Ordering::SeqCst))
    }
}
