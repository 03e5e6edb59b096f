//! `hbench`: the load generators of bench/run that need more speed than
//! Python gives. Each prints one JSON object on stdout.
//!
//! ```text
//! hbench echo-server                      a bare tokio-tungstenite WebSocket echo server (prints its URL)
//! hbench ipc-rtt --url U [--token T] --inflight N --count C [--op status]
//!                                         request/response round trips (`status`) over a WebSocket
//! hbench ipc-rtt --url U --url2 U2 ...    one at a time, alternating between two servers
//! hbench ipc-pubsub --pub-url U --sub-url U[,U...] --token T [--dial ADDR] --topic T [sweep options]
//!                                         publish on one daemon's IPC, receive on the others'
//! hbench control-pubsub --pub-sock PATH --sub-socks PATH[,PATH...] --topic T [sweep options]
//!                                         the same through go-libp2p-daemon's control protocol
//!                                         (PUBLISH on a new connection each, up to 64 at once, as
//!                                         p2pclient does; SUBSCRIBE streams), for any daemon
//! hbench host-pubsub --pub-api URL --sub-api URL --topic T [sweep options]
//!                                         POST publish on one host, receive on another's /api/events
//! sweep options: --size 256 --lat-count 1000 --lat-rate 200 --rates 500,1000,... --secs 3 --grace 3
//!                --burst N (then N messages as fast as possible) --conns 16 (HTTP connections)
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(list: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < list.len() {
            if let Some(k) = list[i].strip_prefix("--") {
                let v = list.get(i + 1).cloned().unwrap_or_default();
                map.insert(k.to_string(), v);
                i += 2;
            } else {
                i += 1;
            }
        }
        Args(map)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn req(&self, k: &str) -> String {
        self.get(k)
            .unwrap_or_else(|| panic!("--{k} is required"))
            .to_string()
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.get(k)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number")))
            .unwrap_or(default)
    }
    fn list(&self, k: &str, default: &str) -> Vec<f64> {
        self.get(k)
            .unwrap_or(default)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a list of numbers"))
            .collect()
    }
}

/// Percentiles of latencies in microseconds.
fn summary(lat_us: &mut [f64]) -> Value {
    if lat_us.is_empty() {
        return json!({"n": 0});
    }
    lat_us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pick = |q: f64| {
        let i = ((lat_us.len() as f64 - 1.0) * q).round() as usize;
        (lat_us[i] * 10.0).round() / 10.0
    };
    json!({
        "n": lat_us.len(),
        "p50_us": pick(0.5),
        "p90_us": pick(0.9),
        "p99_us": pick(0.99),
        "max_us": pick(1.0),
        "min_us": pick(0.0),
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cmd = argv.get(1).cloned().unwrap_or_default();
    let args = Args::parse(&argv[2.min(argv.len())..]);
    let rt = if args.get("threads") == Some("1") || cmd != "echo-server" {
        // Load generators run on one thread: the machine has two cores and
        // the daemon under test needs the other one.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("runtime");
    let result = rt.block_on(async {
        match cmd.as_str() {
            "echo-server" => echo_server().await,
            "ipc-rtt" => ipc_rtt(&args).await,
            "ipc-pubsub" => ipc_pubsub(&args).await,
            "host-pubsub" => host_pubsub(&args).await,
            "control-pubsub" => control_pubsub(&args).await,
            _ => Err(format!("unknown command {cmd:?}; see the source for usage").into()),
        }
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("hbench {cmd}: {e}");
            std::process::exit(1);
        }
    }
}

// --- a bare WebSocket echo server --------------------------------------

async fn echo_server() -> AnyResult<Value> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                } else if msg.is_close() {
                    return;
                }
            }
        });
    }
}

// --- the Hive IPC ---------------------------------------------------------

async fn ws_connect(url: &str) -> AnyResult<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

/// Connect and authenticate (any answer to the hello is accepted, so the
/// echo server passes too).
async fn ipc_connect(url: &str, token: Option<&str>) -> AnyResult<Ws> {
    let mut ws = ws_connect(url).await?;
    let hello = json!({"type": "hello", "version": 1, "token": token.unwrap_or("")});
    ws.send(Message::text(hello.to_string())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(_))) => Ok(ws),
        other => Err(format!("no answer to the hello: {other:?}").into()),
    }
}

fn frame_id(text: &str) -> Option<(u64, bool)> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("type").and_then(Value::as_str) == Some("event") {
        return None;
    }
    Some((v.get("id")?.as_u64()?, v.get("error").is_some()))
}

/// One request at a time, alternating between two servers (`--url` and
/// `--url2`), so that both see the same state of the machine: on a VM the
/// wake-up of an idle vCPU dominates a lone round trip and swings from run
/// to run, and a paired run cancels that out of the ratio.
async fn ipc_rtt_paired(args: &Args) -> AnyResult<Value> {
    let count: usize = args.num("count", 10_000);
    let warmup: usize = args.num("warmup", 500);
    let op = args.get("op").unwrap_or("status").to_string();
    let mut a = ipc_connect(&args.req("url"), args.get("token")).await?;
    let mut b = ipc_connect(&args.req("url2"), args.get("token")).await?;
    let mut lat = [Vec::with_capacity(count), Vec::with_capacity(count)];
    let mut errors = [0u64, 0u64];
    for i in 0..(warmup + count) as u64 {
        for (k, ws) in [&mut a, &mut b].into_iter().enumerate() {
            let t0 = Instant::now();
            ws.send(Message::text(format!(r#"{{"type":"request","id":{i},"op":"{op}"}}"#)))
                .await?;
            loop {
                let msg = ws.next().await.ok_or("IPC closed")??;
                let Message::Text(text) = msg else { continue };
                if let Some((id, is_err)) = frame_id(&text) {
                    if id == i {
                        if i as usize >= warmup {
                            lat[k].push(t0.elapsed().as_nanos() as f64 / 1000.0);
                            errors[k] += u64::from(is_err);
                        }
                        break;
                    }
                }
            }
        }
    }
    let [mut la, mut lb] = lat;
    let mut out = json!({"a": summary(&mut la), "b": summary(&mut lb)});
    out["a"]["errors"] = json!(errors[0]);
    out["b"]["errors"] = json!(errors[1]);
    Ok(out)
}

async fn ipc_rtt(args: &Args) -> AnyResult<Value> {
    if args.get("url2").is_some() {
        return ipc_rtt_paired(args).await;
    }
    let url = args.req("url");
    let inflight: usize = args.num("inflight", 1);
    let count: usize = args.num("count", 10_000);
    let warmup: usize = args.num("warmup", 500);
    let op = args.get("op").unwrap_or("status").to_string();
    let mut ws = ipc_connect(&url, args.get("token")).await?;
    let request = |id: u64| Message::text(format!(r#"{{"type":"request","id":{id},"op":"{op}"}}"#));

    let mut lat = Vec::with_capacity(count);
    let mut errors = 0u64;
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let total = warmup + count;
    let mut next_id = 0u64;
    let mut started = Instant::now();
    let mut done = 0usize;
    // Prime the window.
    while (next_id as usize) < total && sent_at.len() < inflight {
        sent_at.insert(next_id, Instant::now());
        ws.feed(request(next_id)).await?;
        next_id += 1;
    }
    ws.flush().await?;
    while done < total {
        let msg = ws.next().await.ok_or("IPC closed")??;
        let Message::Text(text) = msg else { continue };
        let Some((id, is_err)) = frame_id(&text) else {
            continue;
        };
        let Some(t0) = sent_at.remove(&id) else {
            continue;
        };
        done += 1;
        if done == warmup {
            started = Instant::now();
        }
        if done > warmup {
            lat.push(t0.elapsed().as_nanos() as f64 / 1000.0);
            errors += u64::from(is_err);
        }
        if (next_id as usize) < total {
            sent_at.insert(next_id, Instant::now());
            ws.send(request(next_id)).await?;
            next_id += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = summary(&mut lat);
    out["inflight"] = json!(inflight);
    out["rps"] = json!((count as f64 / secs).round());
    out["errors"] = json!(errors);
    let _ = ws.close(None).await;
    Ok(out)
}

// --- pubsub sweeps ----------------------------------------------------------

/// Payload: run (u32), sequence (u32), send time in ns since `BASE` (u64), padding.
fn payload(run: u32, seq: u32, base: Instant, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&run.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
    p.resize(size.max(16), b'x');
    p
}

/// What the receiving side saw, per run.
#[derive(Default)]
struct Received {
    /// run -> (count, latencies in µs)
    runs: HashMap<u32, (u64, Vec<f64>)>,
    last_at: Option<Instant>,
}

fn record(received: &Mutex<Received>, base: Instant, data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let run = u32::from_be_bytes(data[0..4].try_into().unwrap());
    let sent_ns = u64::from_be_bytes(data[8..16].try_into().unwrap());
    let now_ns = base.elapsed().as_nanos() as u64;
    let mut r = received.lock().unwrap();
    let e = r.runs.entry(run).or_default();
    e.0 += 1;
    e.1.push(now_ns.saturating_sub(sent_ns) as f64 / 1000.0);
    r.last_at = Some(Instant::now());
}

/// Something that publishes payloads, paced by the caller; `publish`
/// returns once the message is handed over (not necessarily answered).
trait Publisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()>;
    /// Wait for every answer; returns the number of error answers so far.
    async fn settle(&mut self) -> AnyResult<u64>;
}

struct Sweep {
    size: usize,
    lat_count: u32,
    lat_rate: f64,
    rates: Vec<f64>,
    secs: f64,
    grace: Duration,
    /// Subscribers that each must get every message.
    receivers: u64,
    /// Messages published as fast as the publisher can, after the sweep (0 = none).
    burst: u32,
}

impl Sweep {
    fn from(args: &Args) -> Sweep {
        Sweep {
            size: args.num("size", 256),
            lat_count: args.num("lat-count", 1000),
            lat_rate: args.num("lat-rate", 200.0),
            rates: args.list("rates", "500,1000,2000,4000,8000,16000,32000"),
            secs: args.num("secs", 3.0),
            grace: Duration::from_secs_f64(args.num("grace", 3.0)),
            receivers: 1,
            burst: args.num("burst", 0),
        }
    }
}

/// One paced run: `n` messages at `rate`/s. Returns a JSON record.
async fn paced_run<P: Publisher>(
    p: &mut P,
    received: &Mutex<Received>,
    base: Instant,
    run: u32,
    n: u32,
    rate: f64,
    sweep: &Sweep,
) -> AnyResult<Value> {
    let start = Instant::now();
    let errors_before = p.settle().await?;
    let start_send = Instant::now();
    for seq in 0..n {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        p.publish(payload(run, seq, base, sweep.size)).await?;
    }
    let send_secs = start_send.elapsed().as_secs_f64();
    let errors = p.settle().await? - errors_before;
    // Wait for stragglers: until all arrived, or `grace` without progress.
    let expected = u64::from(n) * sweep.receivers;
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let count = received
            .lock()
            .unwrap()
            .runs
            .get(&run)
            .map(|e| e.0)
            .unwrap_or(0);
        if count >= expected {
            break;
        }
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > sweep.grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (count, mut lat, last_at) = {
        let mut r = received.lock().unwrap();
        let (count, lat) = r.runs.remove(&run).unwrap_or_default();
        (count, lat, r.last_at)
    };
    let achieved = f64::from(n) / send_secs;
    let mut out = summary(&mut lat);
    out["rate"] = json!(rate);
    out["sent"] = json!(n);
    out["received"] = json!(count);
    out["errors"] = json!(errors);
    out["achieved_rate"] = json!(achieved.round());
    out["no_loss"] = json!(count == expected && errors == 0);
    out["receivers"] = json!(sweep.receivers);
    // Delivery keeps up when the last message arrives no later than 10 % of
    // the sending time (plus 50 ms) after the last was sent: a backlog that
    // builds up inside the system is not a sustained rate.
    let mut in_time = false;
    if let Some(last) = last_at.filter(|_| count > 0) {
        let secs = last.saturating_duration_since(start_send).as_secs_f64();
        out["delivery_rate"] = json!((count as f64 / sweep.receivers as f64 / secs).round());
        in_time = secs <= send_secs * 1.1 + 0.05;
    }
    out["delivered_in_time"] = json!(in_time);
    out["kept_pace"] = json!(achieved >= 0.95 * rate);
    Ok(out)
}

async fn run_sweep<P: Publisher>(
    p: &mut P,
    received: &Mutex<Received>,
    base: Instant,
    sweep: &Sweep,
) -> AnyResult<Value> {
    // Warm-up so that the mesh and the connections are hot.
    let _ = paced_run(p, received, base, 0, 50, 100.0, sweep).await?;
    let latency = paced_run(p, received, base, 1, sweep.lat_count, sweep.lat_rate, sweep).await?;
    let mut runs = Vec::new();
    let mut best = 0.0f64;
    let mut client_bound = false;
    for (i, &rate) in sweep.rates.iter().enumerate() {
        let n = (rate * sweep.secs).round().max(1.0) as u32;
        let r = paced_run(p, received, base, 2 + i as u32, n, rate, sweep).await?;
        let delivered = r["no_loss"] == json!(true) && r["delivered_in_time"] == json!(true);
        let paced = r["kept_pace"] == json!(true);
        eprintln!(
            "  rate {rate}/s: sent {n}, received {}, errors {}, achieved {}/s, delivered in time: {}",
            r["received"], r["errors"], r["achieved_rate"], r["delivered_in_time"]
        );
        let achieved = r["achieved_rate"].as_f64().unwrap_or(0.0);
        runs.push(r);
        if delivered && paced {
            best = rate;
            continue;
        }
        if delivered {
            // Everything arrived in time, but the publisher could not go faster.
            client_bound = true;
            best = best.max(achieved);
        }
        break;
    }
    let mut out = json!({"latency": latency, "sweep": runs, "max_no_loss_rate": best,
        "publisher_bound": client_bound});
    if sweep.burst > 0 {
        let r = paced_run(p, received, base, 1000, sweep.burst, f64::INFINITY, sweep).await?;
        eprintln!(
            "  burst: sent {}, received {}, errors {}, published at {}/s",
            sweep.burst, r["received"], r["errors"], r["achieved_rate"]
        );
        out["burst"] = r;
    }
    Ok(out)
}

// IPC publisher: pipelined requests on one WebSocket, answers read by a task.
struct IpcPublisher {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    topic: String,
    next_id: u64,
    window: Arc<Semaphore>,
    errors: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
}

const WINDOW: usize = 1000;

impl Publisher for IpcPublisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()> {
        self.window.acquire().await?.forget();
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"type": "request", "id": id, "op": "publish",
            "args": {"topic": self.topic, "data": B64.encode(&data)}});
        self.sink.send(Message::text(frame.to_string())).await?;
        Ok(())
    }
    async fn settle(&mut self) -> AnyResult<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.answered.load(Ordering::SeqCst) < self.next_id && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.errors.load(Ordering::SeqCst))
    }
}

async fn request(ws: &mut Ws, id: u64, op: &str, args: Value) -> AnyResult<Value> {
    let frame = json!({"type": "request", "id": id, "op": op, "args": args});
    ws.send(Message::text(frame.to_string())).await?;
    loop {
        let msg = ws.next().await.ok_or("IPC closed")??;
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text)?;
        if v["type"] == "response" && v["id"] == json!(id) {
            if let Some(e) = v.get("error") {
                return Err(format!("{op}: {e}").into());
            }
            return Ok(v["result"].clone());
        }
    }
}

async fn ipc_pubsub(args: &Args) -> AnyResult<Value> {
    let token = args.req("token");
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let mut sweep = Sweep::from(args);
    let mut publ = ipc_connect(&args.req("pub-url"), Some(&token)).await?;
    let mut subs = Vec::new();
    for url in args.req("sub-url").split(',') {
        let mut sub = ipc_connect(url, Some(&token)).await?;
        request(&mut sub, 1, "subscribe", json!({"topic": topic})).await?;
        subs.push(sub);
    }
    sweep.receivers = subs.len() as u64;
    request(&mut publ, 1, "subscribe", json!({"topic": topic})).await?;
    if let Some(addr) = args.get("dial") {
        request(&mut publ, 2, "dial", json!({"addr": addr})).await?;
    }
    let setup = Instant::now();
    let mut id = 10;
    loop {
        id += 1;
        let r = request(&mut publ, id, "topic_peers", json!({"topic": topic})).await?;
        let mut all = r["peers"].as_array().is_some_and(|p| !p.is_empty());
        for sub in subs.iter_mut() {
            let r = request(sub, id, "topic_peers", json!({"topic": topic})).await?;
            all &= r["peers"].as_array().is_some_and(|p| !p.is_empty());
        }
        if all {
            break;
        }
        if setup.elapsed() > Duration::from_secs(20) {
            return Err("the subscriber never joined the publisher's topic".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mesh_ms = setup.elapsed().as_millis();
    // One gossipsub heartbeat so that both meshes include each other.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let lagged = Arc::new(AtomicU64::new(0));
    for mut sub in subs {
        let received = received.clone();
        let lagged = lagged.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = sub.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if v["type"] != "event" {
                    continue;
                }
                if v["event"] == "lagged" {
                    lagged.fetch_add(v["missed"].as_u64().unwrap_or(1), Ordering::SeqCst);
                }
                if v["event"] != "message" || v["topic"] != topic.as_str() {
                    continue;
                }
                if let Some(data) = v["data"].as_str().and_then(|d| B64.decode(d).ok()) {
                    record(&received, base, &data);
                }
            }
        });
    }
    let (sink, mut stream) = publ.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let errors = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None));
    {
        let (window, errors, answered, first_error) = (
            window.clone(),
            errors.clone(),
            answered.clone(),
            first_error.clone(),
        );
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if v["type"] != "response" {
                    continue;
                }
                if let Some(e) = v.get("error") {
                    errors.fetch_add(1, Ordering::SeqCst);
                    first_error.lock().unwrap().get_or_insert(e.to_string());
                }
                answered.fetch_add(1, Ordering::SeqCst);
                window.add_permits(1);
            }
        });
    }
    let mut p = IpcPublisher {
        sink,
        topic,
        next_id: 0,
        window,
        errors,
        answered,
        first_error: first_error.clone(),
    };
    // The answers of the setup requests are not counted.
    let mut out = run_sweep(&mut p, &received, base, &sweep).await?;
    out["mesh_ms"] = json!(mesh_ms);
    out["lagged_events"] = json!(lagged.load(Ordering::SeqCst));
    out["first_error"] = json!(p.first_error.lock().unwrap().clone());
    Ok(out)
}

// --- the host HTTP API ------------------------------------------------------

/// A keep-alive HTTP/1.1 connection, just enough for the host's JSON API.
struct Http {
    host: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(api: &str) -> AnyResult<Http> {
        let host = api
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            host,
            stream,
            buf: Vec::new(),
        })
    }

    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> AnyResult<(u16, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        // Headers.
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("HTTP connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let lower = head.to_ascii_lowercase();
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        if lower.contains("transfer-encoding: chunked") {
            return Err("chunked responses are not supported by this client".into());
        }
        while self.buf.len() < head_end + len {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("HTTP connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok((status, body))
    }
}

struct HttpPublisher {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    pending: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
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
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.errors.load(Ordering::SeqCst))
    }
}

async fn host_pubsub(args: &Args) -> AnyResult<Value> {
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
    let setup = Instant::now();
    loop {
        let (_, body) = a.call("GET", "/api/topics", b"").await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let joined = v.as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["topic"] == topic.as_str() && t["peers"].as_u64().unwrap_or(0) > 0)
        });
        if joined {
            break;
        }
        if setup.elapsed() > Duration::from_secs(20) {
            return Err(format!("host B never joined the topic on A: {v}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mesh_ms = setup.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    let ws_url = format!(
        "ws://{}/api/events",
        sub_api.trim_start_matches("http://").trim_end_matches('/')
    );
    let mut events = ws_connect(&ws_url).await?;
    {
        let received = received.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
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
        });
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(conns * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let pending = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let path = format!("/api/topics/{topic}/publish");
    for _ in 0..conns {
        let mut http = Http::connect(&pub_api).await?;
        let (rx, pending, errors, first_error, path) = (
            rx.clone(),
            pending.clone(),
            errors.clone(),
            first_error.clone(),
            path.clone(),
        );
        tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(data) = next else { return };
                match http.call("POST", &path, &data).await {
                    Ok((200, _)) => {}
                    Ok((s, body)) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("{s} {}", String::from_utf8_lossy(&body)));
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
    let mut p = HttpPublisher {
        tx: Some(tx),
        pending,
        errors,
    };
    let mut out = run_sweep(&mut p, &received, base, &sweep).await?;
    p.tx = None;
    out["mesh_ms"] = json!(mesh_ms);
    out["conns"] = json!(conns);
    out["first_error"] = json!(first_error.lock().unwrap().clone());
    Ok(out)
}

// --- go-libp2p-daemon's control protocol -------------------------------------

mod control {
    //! Varint-framed proto2, encoded by hand: only PUBSUB PUBLISH / SUBSCRIBE
    //! and LIST_PEERS requests, and the few response fields read back.
    use tokio::io::{AsyncRead, AsyncReadExt};

    pub fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field_bytes(field: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn field_varint(field: u64, v: u64, out: &mut Vec<u8>) {
        varint(field << 3, out);
        varint(v, out);
    }

    /// A framed Request{type: PUBSUB, pubsub: PSRequest{type, topic, data}}.
    pub fn pubsub_request(kind: u64, topic: &str, data: Option<&[u8]>) -> Vec<u8> {
        let mut ps = Vec::new();
        field_varint(1, kind, &mut ps);
        field_bytes(2, topic.as_bytes(), &mut ps);
        if let Some(d) = data {
            field_bytes(3, d, &mut ps);
        }
        let mut req = Vec::new();
        field_varint(1, 8, &mut req);
        field_bytes(8, &ps, &mut req);
        let mut framed = Vec::new();
        varint(req.len() as u64, &mut framed);
        framed.extend_from_slice(&req);
        framed
    }

    pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
        let mut len = 0u64;
        let mut shift = 0;
        loop {
            let b = r.read_u8().await?;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut buf = vec![0u8; len as usize];
        r.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// (field, varint value or bytes) pairs of one message.
    pub fn fields(mut buf: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        fn rv(buf: &mut &[u8]) -> Option<u64> {
            let mut n = 0u64;
            let mut shift = 0;
            loop {
                let (&b, rest) = buf.split_first()?;
                *buf = rest;
                n |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(n);
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let Some(key) = rv(&mut buf) else { break };
            match key & 7 {
                0 => {
                    let Some(v) = rv(&mut buf) else { break };
                    out.push((key >> 3, v, Vec::new()));
                }
                2 => {
                    let Some(n) = rv(&mut buf) else { break };
                    let n = n as usize;
                    if n > buf.len() {
                        break;
                    }
                    out.push((key >> 3, 0, buf[..n].to_vec()));
                    buf = &buf[n..];
                }
                1 => buf = &buf[8.min(buf.len())..],
                5 => buf = &buf[4.min(buf.len())..],
                _ => break,
            }
        }
        out
    }

    /// An OK response, or the daemon's error text.
    pub fn check(resp: &[u8]) -> Result<Vec<(u64, u64, Vec<u8>)>, String> {
        let f = fields(resp);
        if f.iter().any(|(k, v, _)| *k == 1 && *v == 1) {
            let msg = f
                .iter()
                .find(|(k, _, _)| *k == 2)
                .map(|(_, _, b)| fields(b))
                .and_then(|e| e.into_iter().find(|(k, _, _)| *k == 1))
                .map(|(_, _, b)| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default();
            return Err(msg);
        }
        Ok(f)
    }
}

async fn control_call(sock: &str, framed: &[u8]) -> AnyResult<Vec<(u64, u64, Vec<u8>)>> {
    let mut conn = tokio::net::UnixStream::connect(sock).await?;
    conn.write_all(framed).await?;
    let resp = control::read_frame(&mut conn).await?;
    Ok(control::check(&resp)?)
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
        let framed = control::pubsub_request(2, &self.topic, Some(&data));
        let (sock, pending, errors, first_error) = (
            self.sock.clone(),
            self.pending.clone(),
            self.errors.clone(),
            self.first_error.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = control_call(&sock, &framed).await {
                errors.fetch_add(1, Ordering::SeqCst);
                first_error.lock().unwrap().get_or_insert(e.to_string());
            }
            pending.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
        Ok(())
    }
    async fn settle(&mut self) -> AnyResult<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.errors.load(Ordering::SeqCst))
    }
}

async fn control_pubsub(args: &Args) -> AnyResult<Value> {
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let pub_sock = args.req("pub-sock");
    let mut sweep = Sweep::from(args);
    let base = Instant::now();
    let received = Arc::new(Mutex::new(Received::default()));
    // Subscribe everywhere (the publisher too, and its stream is drained, not counted).
    let sub_socks: Vec<String> = args.req("sub-socks").split(',').map(String::from).collect();
    sweep.receivers = sub_socks.len() as u64;
    let mut streams = Vec::new();
    for (i, sock) in std::iter::once(&pub_sock).chain(sub_socks.iter()).enumerate() {
        let mut conn = tokio::net::UnixStream::connect(sock).await?;
        conn.write_all(&control::pubsub_request(3, &topic, None)).await?;
        let resp = control::read_frame(&mut conn).await?;
        control::check(&resp).map_err(|e| format!("SUBSCRIBE on {sock}: {e}"))?;
        streams.push((i == 0, conn));
    }
    // Until every daemon sees a peer in the topic (PUBSUB LIST_PEERS).
    let setup = Instant::now();
    loop {
        let mut all = true;
        for sock in std::iter::once(&pub_sock).chain(sub_socks.iter()) {
            let f = control_call(sock, &control::pubsub_request(1, &topic, None)).await?;
            let peers = f
                .iter()
                .find(|(k, _, _)| *k == 7)
                .map(|(_, _, b)| control::fields(b).iter().filter(|(k, _, _)| *k == 2).count())
                .unwrap_or(0);
            all &= peers > 0;
        }
        if all {
            break;
        }
        if setup.elapsed() > Duration::from_secs(30) {
            return Err("the topic mesh did not form in 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mesh_ms = setup.elapsed().as_millis();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (own, mut conn) in streams {
        let received = received.clone();
        tokio::spawn(async move {
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
        });
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
