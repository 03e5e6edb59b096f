//! `hive doctor`: what stops a node from starting or from meeting its
//! peers, and what to do about it, as text or `--json`.
//!
//! go-libp2p-daemon's users most often see "failed to start in 15 s" and
//! nothing else. Each check here names what it looked at, what is wrong and
//! the fix: the binaries, the data directory and identity, the ports a node
//! would bind, every bootstrap peer (reachable? the peer id it claims?), and,
//! when a host already answers at `--api`, its daemon, peers, tension,
//! reachability (AutoNAT) and relay slots.
//! Doctor changes nothing on disk: it binds ports and releases them at once,
//! and opens TCP connections and closes them; only with a running host does
//! it ask that node to dial each bootstrap peer (which may then stay
//! connected, as a bootstrap peer would).

mod checks;
mod reach;

use serde::Serialize;

pub use checks::DoctorArgs;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

/// Run every check and print the report; an error (exit status 1) when a
/// check failed, so scripts can gate on it.
pub async fn run(args: DoctorArgs, api: &str) -> anyhow::Result<()> {
    let checks = checks::all(&args, api).await;
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if args.json {
        let report = Report { ok, checks };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &checks {
            print_check(check);
        }
    }
    if ok {
        Ok(())
    } else {
        anyhow::bail!("hive doctor found problems (see above)")
    }
}

fn print_check(check: &Check) {
    let mark = match check.status {
        Status::Ok => "ok  ",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    };
    println!("[{mark}] {}: {}", check.name, check.detail);
    if let Some(fix) = &check.fix {
        println!("       fix: {fix}");
    }
}
