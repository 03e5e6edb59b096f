//! Pubsub sweeps: a latency run at a low rate, then a ladder of rates until
//! one loses messages or falls behind, then an optional burst. The same for
//! every front door (IPC, host API, control protocol); only the
//! [`Publisher`] and what feeds [`record`] differ.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::args::{summary, AnyResult, Args};

/// Wait after the meshes formed, before a sweep starts: one gossipsub
/// heartbeat (1 s) and a margin, so that every daemon's mesh includes the
/// others. The same for every implementation measured.
pub const MESH_SETTLE: Duration = Duration::from_millis(1500);

/// Payload: run (u32), sequence (u32), send time in ns since `base` (u64), padding.
pub fn payload(run: u32, seq: u32, base: Instant, size: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&run.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
    p.resize(size.max(16), b'x');
    p
}

/// What the receiving side saw, per run.
#[derive(Default)]
pub struct Received {
    /// run -> (count, latencies in µs)
    runs: HashMap<u32, (u64, Vec<f64>)>,
    last_at: Option<Instant>,
}

impl Received {
    fn count(&self, run: u32) -> u64 {
        self.runs.get(&run).map(|e| e.0).unwrap_or(0)
    }
}

/// Count one received payload (shorter ones are not ours).
pub fn record(received: &Mutex<Received>, base: Instant, data: &[u8]) {
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
pub trait Publisher {
    async fn publish(&mut self, data: Vec<u8>) -> AnyResult<()>;
    /// Wait for every answer; returns the number of error answers so far.
    async fn settle(&mut self) -> AnyResult<u64>;
}

pub struct Sweep {
    size: usize,
    lat_count: u32,
    lat_rate: f64,
    rates: Vec<f64>,
    secs: f64,
    grace: Duration,
    /// Subscribers that each must get every message.
    pub receivers: u64,
    /// Messages published as fast as the publisher can, after the sweep (0 = none).
    burst: u32,
}

impl Sweep {
    pub fn from(args: &Args) -> Sweep {
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

/// Wait for stragglers: until `expected` arrived, or `grace` without progress.
async fn wait_for_arrivals(received: &Mutex<Received>, run: u32, expected: u64, grace: Duration) {
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let count = received.lock().unwrap().count(run);
        if count >= expected {
            return;
        }
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > grace {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One paced run: `n` messages at `rate`/s. Returns a JSON record.
async fn paced_run<P: Publisher>(
    p: &mut P,
    received: &Mutex<Received>,
    base: Instant,
    (run, n, rate): (u32, u32, f64),
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
    let expected = u64::from(n) * sweep.receivers;
    wait_for_arrivals(received, run, expected, sweep.grace).await;
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

/// The whole sweep; the JSON object `bench/hivebench` reads.
pub async fn run_sweep<P: Publisher>(
    p: &mut P,
    received: &Mutex<Received>,
    base: Instant,
    sweep: &Sweep,
) -> AnyResult<Value> {
    // Warm-up so that the mesh and the connections are hot.
    let _ = paced_run(p, received, base, (0, 50, 100.0), sweep).await?;
    let latency = (1, sweep.lat_count, sweep.lat_rate);
    let latency = paced_run(p, received, base, latency, sweep).await?;
    let mut runs = Vec::new();
    let mut best = 0.0f64;
    let mut client_bound = false;
    for (i, &rate) in sweep.rates.iter().enumerate() {
        let n = (rate * sweep.secs).round().max(1.0) as u32;
        let r = paced_run(p, received, base, (2 + i as u32, n, rate), sweep).await?;
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
        let burst = (1000, sweep.burst, f64::INFINITY);
        let r = paced_run(p, received, base, burst, sweep).await?;
        eprintln!(
            "  burst: sent {}, received {}, errors {}, published at {}/s",
            sweep.burst, r["received"], r["errors"], r["achieved_rate"]
        );
        out["burst"] = r;
    }
    Ok(out)
}

/// Poll `settle`'s condition: until `pending` is false or `limit` passed.
pub async fn settle_within(limit: Duration, pending: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while pending() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
