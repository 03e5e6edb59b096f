//! `--key value` arguments, and the few helpers every load generator needs.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Every load generator's result: a JSON object on success.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `--key value` pairs; anything else is ignored.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn parse(list: &[String]) -> Args {
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

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn req(&self, k: &str) -> String {
        self.get(k)
            .unwrap_or_else(|| panic!("--{k} is required"))
            .to_string()
    }

    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> T {
        self.get(k)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number")))
            .unwrap_or(default)
    }

    pub fn list(&self, k: &str, default: &str) -> Vec<f64> {
        self.get(k)
            .unwrap_or(default)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a list of numbers"))
            .collect()
    }
}

/// Percentiles of latencies in microseconds.
pub fn summary(lat_us: &mut [f64]) -> Value {
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
