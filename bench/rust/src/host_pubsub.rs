//! `host-pubsub`: POST publish on one host, receive on another's
//! `/api/events` (the host's HTTP API, not the daemon's IPC).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{AnyResult, Args};
use crate::http::Http;
use crate::ipc::{ws_connect, Ws};
use crate::sweep::{record, run_sweep, settle_within, Publisher, Received, Sweep};

pub async fn host_pubsub(args: &Args) -> AnyResult<Value> {
    let pub_api = args.req("pub-api");
    let sub_api = args.req("sub-api");
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let conns: usize = args.num("conns", 16);
    let sweep = Sweep::from(args);

    let mut a = Http::connect(&pub_api).await?;
    let mut b = Http::connect(&sub_api).await?;
    for h in [&mut a, &mut b] {
        let (s, body) = h
            .call("POST", &format!("/api/topics/{topic}/subscribe"), b"")
            .await?;
        if s != 200 {
            return Err(format!("subscribe: {s} {}", String::from_utf8_lossy(&body)).into());
        }
    }
    let mesh_ms = wait_joined(&mut a, &topic).await?;
    tokio::time::sleep(crate::sweep::MESH_SETTLE).await;

    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let ws_url = format!(
        "ws://{}/api/events",
        sub_api.trim_start_matches("http://").trim_end_matches('/')
    );
    let events = ws_connect(&ws_url).await?;
    tokio::spawn(receive(events, topic.clone(), received.clone(), base));
    let mut p = HttpPublisher::start(&pub_api, &topic, conns).await?;
    let mut out = run_sweep(&mut p, &received, base, &sweep).await?;
    p.tx = None;
    out["mesh_ms"] = json!(mesh_ms);
    out["conns"] = json!(conns);
    out["first_error"] = json!(p.first_error.lock().unwrap().clone());
    Ok(out)
}

/// Until host A lists a peer in the topic; returns how long that took.
async fn wait_joined(a: &mut Http, topic: &str) -> AnyResult<u128> {
    let setup = Instant::now();
    loop {
        let (_, body) = a.call("GET", "/api/topics", b"").await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let joined = v.as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["topic"] == topic && t["peers"].as_u64().unwrap_or(0) > 0)
        });
        if joined {
            return Ok(setup.elapsed().as_millis());
        }
        if setup.elapsed() > Duration::from_secs(20) {
            return Err(format!("host B never joined the topic on A: {v}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Count the `message` events on `topic` that host B pushes.
async fn receive(mut events: Ws, topic: String, received: Arc<Mutex<Received>>, base: Instant) {
    while let Some(Ok(msg)) = events.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v["type"] != "message" || v["topic"] != topic.as_str() {
            continue;
        }
        if let Some(data) = v["data"].as_str().and_then(|d| B64.decode(d).ok()) {
            record(&received, base, &data);
        }
    }
}

/// `conns` keep-alive connections, each POSTing the next payload.
struct HttpPublisher {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    pending: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

impl HttpPublisher {
    async fn start(api: &str, topic: &str, conns: usize) -> AnyResult<HttpPublisher> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(conns * 2);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let p = HttpPublisher {
            tx: Some(tx),
            pending: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(AtomicU64::new(0)),
            first_error: Arc::new(Mutex::new(None)),
        };
        let path = format!("/api/topics/{topic}/publish");
        for _ in 0..conns {
            let http = Http::connect(api).await?;
            tokio::spawn(p.post_loop(http, rx.clone(), path.clone()));
        }
        Ok(p)
    }

    /// One connection's loop: POST what comes, count failures.
    fn post_loop(
        &self,
        mut http: Http,
        rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>>,
        path: String,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (pending, errors, first_error) = (
            self.pending.clone(),
            self.errors.clone(),
            self.first_error.clone(),
        );
        async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(data) = next else { return };
                let failure = match http.call("POST", &path, &data).await {
                    Ok((200, _)) => None,
                    Ok((s, body)) => Some(format!("{s} {}", String::from_utf8_lossy(&body))),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(failure) = failure {
                    errors.fetch_add(1, Ordering::SeqCst);
                    first_error.lock().unwrap().get_or_insert(failure);
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

impl Publisher for HttpPublisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.tx
            .as_ref()
            .ok_or("closed")?
            .send(data)
            .await
            .map_err(|_| "publishers gone")?;
        Ok(())
    }

    async fn settle(&mut self) -> AnyResult<u64> {
        let pending = self.pending.clone();
        settle_within(Duration::from_secs(60), || {
            pending.load(Ordering::SeqCst) > 0
        })
        .await;
        Ok(self.errors.load(Ordering::SeqCst))
    }
}
