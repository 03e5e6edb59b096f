//! `ipc-pubsub`: publish on one daemon's IPC, receive on the others'.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hive_proto::codec::decode_server_frame;
use hive_proto::{DialResult, Event, Op, ServerFrame, SubscribeResult, TopicPeersResult};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{AnyResult, Args};
use crate::ipc::{self, Ws};
use crate::sweep::{record, run_sweep, settle_within, Publisher, Received, Sweep};

/// Publish requests in flight at most.
const WINDOW: usize = 1000;

pub async fn ipc_pubsub(args: &Args) -> AnyResult<Value> {
    let token = args.req("token");
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let mut sweep = Sweep::from(args);
    let mut publ = ipc::connect(&args.req("pub-url"), Some(&token)).await?;
    let mut subs = Vec::new();
    for url in args.req("sub-url").split(',') {
        let mut sub = ipc::connect(url, Some(&token)).await?;
        subscribe(&mut sub, &topic).await?;
        subs.push(sub);
    }
    sweep.receivers = subs.len() as u64;
    subscribe(&mut publ, &topic).await?;
    if let Some(addr) = args.get("dial") {
        let dial = Op::Dial {
            addr: addr.to_string(),
        };
        ipc::call::<DialResult>(&mut publ, 2, dial).await?;
    }
    let mesh_ms = wait_for_mesh(&mut publ, &mut subs, &topic).await?;
    tokio::time::sleep(crate::sweep::MESH_SETTLE).await;

    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let lagged = Arc::new(AtomicU64::new(0));
    for sub in subs {
        tokio::spawn(receive(
            sub,
            topic.clone(),
            received.clone(),
            lagged.clone(),
            base,
        ));
    }
    // The answers of the setup requests are not counted.
    let mut p = IpcPublisher::start(publ, topic);
    let mut out = run_sweep(&mut p, &received, base, &sweep).await?;
    out["mesh_ms"] = json!(mesh_ms);
    out["lagged_events"] = json!(lagged.load(Ordering::SeqCst));
    out["first_error"] = json!(p.first_error.lock().unwrap().clone());
    Ok(out)
}

async fn subscribe(ws: &mut Ws, topic: &str) -> AnyResult<()> {
    let op = Op::Subscribe {
        topic: topic.to_string(),
    };
    ipc::call::<SubscribeResult>(ws, 1, op).await?;
    Ok(())
}

/// Until every daemon lists a peer in the topic; returns how long that took.
async fn wait_for_mesh(publ: &mut Ws, subs: &mut [Ws], topic: &str) -> AnyResult<u128> {
    let setup = Instant::now();
    let mut id = 10;
    loop {
        id += 1;
        let mut all = true;
        for ws in std::iter::once(&mut *publ).chain(subs.iter_mut()) {
            let op = Op::TopicPeers {
                topic: topic.to_string(),
            };
            let r: TopicPeersResult = ipc::call(ws, id, op).await?;
            all &= !r.peers.is_empty();
        }
        if all {
            return Ok(setup.elapsed().as_millis());
        }
        if setup.elapsed() > Duration::from_secs(20) {
            return Err("the subscriber never joined the publisher's topic".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Count the subscriber's `message` events on `topic`, and its `lagged` ones.
async fn receive(
    mut sub: Ws,
    topic: String,
    received: Arc<Mutex<Received>>,
    lagged: Arc<AtomicU64>,
    base: Instant,
) {
    while let Some(Ok(msg)) = sub.next().await {
        let Message::Text(text) = msg else { continue };
        match ipc::event(&text) {
            Some(Event::Lagged { missed }) => {
                lagged.fetch_add(missed, Ordering::SeqCst);
            }
            Some(Event::Message { topic: t, data, .. }) if t == topic => {
                record(&received, base, &data.0);
            }
            _ => {}
        }
    }
}

/// Pipelined publish requests on one WebSocket, answers read by a task.
struct IpcPublisher {
    sink: SplitSink<Ws, Message>,
    topic: String,
    next_id: u64,
    window: Arc<Semaphore>,
    errors: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl IpcPublisher {
    fn start(ws: Ws, topic: String) -> IpcPublisher {
        let (sink, mut stream) = ws.split();
        let p = IpcPublisher {
            sink,
            topic,
            next_id: 0,
            window: Arc::new(Semaphore::new(WINDOW)),
            errors: Arc::new(AtomicU64::new(0)),
            answered: Arc::new(AtomicU64::new(0)),
            first_error: Arc::new(Mutex::new(None)),
        };
        let (window, errors, answered, first_error) = (
            p.window.clone(),
            p.errors.clone(),
            p.answered.clone(),
            p.first_error.clone(),
        );
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(ServerFrame::Response(r)) = decode_server_frame(&text) else {
                    continue;
                };
                if let Some(e) = r.error {
                    errors.fetch_add(1, Ordering::SeqCst);
                    let text = serde_json::to_string(&e).unwrap_or_else(|_| e.to_string());
                    first_error.lock().unwrap().get_or_insert(text);
                }
                answered.fetch_add(1, Ordering::SeqCst);
                window.add_permits(1);
            }
        });
        p
    }
}

impl Publisher for IpcPublisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()> {
        self.window.acquire().await?.forget();
        let id = self.next_id;
        self.next_id += 1;
        let op = Op::Publish {
            topic: self.topic.clone(),
            data: data.into(),
            id: None,
        };
        self.sink.send(ipc::request_frame(id, op)?).await?;
        Ok(())
    }

    async fn settle(&mut self) -> AnyResult<u64> {
        let (answered, sent) = (self.answered.clone(), self.next_id);
        settle_within(Duration::from_secs(30), || {
            answered.load(Ordering::SeqCst) < sent
        })
        .await;
        Ok(self.errors.load(Ordering::SeqCst))
    }
}
