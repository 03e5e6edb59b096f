//! `host-accept`: how fast one host's API accepts publishes into its
//! outbox. `--conns` keep-alive connections each POST the next message as
//! soon as the last one was answered (so `--conns` requests are in flight),
//! for `--secs` seconds after a one-second warm-up; every answer must be
//! 200. Reports messages accepted per second and the POST latency.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::args::{summary, AnyResult, Args};
use crate::http::Http;

/// Unmeasured time at the start, so that connection set-up and the first
/// commits do not count.
const WARMUP: Duration = Duration::from_secs(1);

pub async fn host_accept(args: &Args) -> AnyResult<Value> {
    let api = args.req("api");
    let topic = args.get("topic").unwrap_or("bench").to_string();
    let conns: usize = args.num("conns", 64);
    let secs: f64 = args.num("secs", 5.0);
    let size: usize = args.num("size", 256);
    let path = format!("/api/topics/{topic}/publish");
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + Duration::from_secs_f64(secs);
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let mut http = Http::connect(&api).await?;
        let (path, latencies) = (path.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = vec![b'x'; size];
            let mut seq: u64 = 0;
            loop {
                let t = Instant::now();
                if t >= end {
                    return Ok::<(), String>(());
                }
                seq += 1;
                let tag = format!("{c}:{seq}:");
                let n = tag.len().min(body.len());
                body[..n].copy_from_slice(&tag.as_bytes()[..n]);
                let (status, answer) = http
                    .call("POST", &path, &body)
                    .await
                    .map_err(|e| e.to_string())?;
                if status != 200 {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&answer)));
                }
                if t >= measure_from {
                    latencies
                        .lock()
                        .unwrap()
                        .push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    let accepted = lat.len();
    Ok(json!({
        "conns": conns,
        "secs": secs,
        "size": size,
        "accepted": accepted,
        "rate": (accepted as f64 / secs).round(),
        "latency": summary(&mut lat),
    }))
}
