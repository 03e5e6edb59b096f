//! `ipc-rtt`: request/response round trips over one WebSocket.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::args::{summary, AnyResult, Args};
use crate::ipc::{self, RttOp, Ws};

/// `--inflight N` requests in flight on one connection (or, with `--url2`,
/// one at a time alternating between two servers).
pub async fn ipc_rtt(args: &Args) -> AnyResult<Value> {
    if args.get("url2").is_some() {
        return ipc_rtt_paired(args).await;
    }
    let inflight: usize = args.num("inflight", 1);
    let count: usize = args.num("count", 10_000);
    let warmup: usize = args.num("warmup", 500);
    let op = RttOp::parse(args.get("op").unwrap_or("status"));
    let mut ws = ipc::connect(&args.req("url"), args.get("token")).await?;
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
        ws.feed(op.frame(next_id)?).await?;
        next_id += 1;
    }
    ws.flush().await?;
    while done < total {
        let (id, is_err) = next_answer(&mut ws).await?;
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
            ws.send(op.frame(next_id)?).await?;
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

/// The next answer on `ws`: its id and whether it is an error.
async fn next_answer(ws: &mut Ws) -> AnyResult<(u64, bool)> {
    loop {
        let msg = ws.next().await.ok_or("IPC closed")??;
        let Message::Text(text) = msg else { continue };
        if let Some(answer) = ipc::answer_id(&text) {
            return Ok(answer);
        }
    }
}

/// One request at a time, alternating between two servers (`--url` and
/// `--url2`), so that both see the same state of the machine: on a VM the
/// wake-up of an idle vCPU dominates a lone round trip and swings from run
/// to run, and a paired run cancels that out of the ratio.
async fn ipc_rtt_paired(args: &Args) -> AnyResult<Value> {
    let count: usize = args.num("count", 10_000);
    let warmup: usize = args.num("warmup", 500);
    let op = RttOp::parse(args.get("op").unwrap_or("status"));
    let mut a = ipc::connect(&args.req("url"), args.get("token")).await?;
    let mut b = ipc::connect(&args.req("url2"), args.get("token")).await?;
    let mut lat = [Vec::with_capacity(count), Vec::with_capacity(count)];
    let mut errors = [0u64, 0u64];
    for i in 0..(warmup + count) as u64 {
        for (k, ws) in [&mut a, &mut b].into_iter().enumerate() {
            let t0 = Instant::now();
            ws.send(op.frame(i)?).await?;
            loop {
                let (id, is_err) = next_answer(ws).await?;
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
    let [mut la, mut lb] = lat;
    let mut out = json!({"a": summary(&mut la), "b": summary(&mut lb)});
    out["a"]["errors"] = json!(errors[0]);
    out["b"]["errors"] = json!(errors[1]);
    Ok(out)
}
