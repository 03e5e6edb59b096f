//! Reachability and relay slots of a running node, from its `/api/status`
//! field `reach`: can others dial it, and if not, is it reachable through
//! a relay.

use serde_json::Value;

use super::Check;

/// The checks for a running node's `reach` (absent from older daemons).
pub fn checks(status: &Value) -> Vec<Check> {
    let Some(reach) = status.get("reach").filter(|r| r.is_object()) else {
        return vec![Check::warn(
            "reachability",
            "the running daemon does not report its reachability",
            "upgrade hive-p2pd to the version of this hive",
        )];
    };
    let reachable = reach["reachable"].as_bool().unwrap_or(false);
    let slots: Vec<&Value> = reach["relays"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    let reserved: Vec<&str> = slots
        .iter()
        .filter(|s| s["state"] == "reserved")
        .filter_map(|s| s["addr"].as_str())
        .collect();
    let mut checks = vec![reachability(reach, reachable, &reserved)];
    checks.extend(slots.iter().map(|slot| relay_slot(slot, reachable)));
    checks
}

fn reachability(reach: &Value, reachable: bool, reserved: &[&str]) -> Check {
    let mode = reach["mode"].as_str().unwrap_or("auto");
    let autonat = reach["autonat"]
        .as_str()
        .map_or("off".to_owned(), str::to_owned);
    let confirmed: Vec<&str> = reach["confirmed_addrs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let how = format!("reachability {mode}, AutoNAT {autonat}");
    if reachable {
        let at = if confirmed.is_empty() {
            "(forced)".to_owned()
        } else {
            format!("at {}", confirmed.join(", "))
        };
        return Check::ok(
            "reachability",
            format!("others can dial this node directly {at}; {how}"),
        );
    }
    if !reserved.is_empty() {
        return Check::ok(
            "reachability",
            format!(
                "not dialable directly ({how}), but reachable through {}",
                reserved.join(", ")
            ),
        );
    }
    Check::warn(
        "reachability",
        format!("peers outside this network cannot dial this node ({how}) and it holds no relay slot"),
        "keep a slot on a relay (`hive up --relay RELAY-ADDR/p2p/RELAY-ID`), or forward a port and announce it (hive-p2pd --announce ADDR), or turn AutoNAT on (hive-p2pd --autonat) to find out",
    )
}

fn relay_slot(slot: &Value, reachable: bool) -> Check {
    let relay = slot["peer_id"].as_str().unwrap_or("?");
    let name = format!("relay slot {relay}");
    match slot["state"].as_str().unwrap_or("none") {
        "reserved" => Check::ok(name, format!("reserved: announced as {}", slot["addr"].as_str().unwrap_or("?"))),
        "reserving" => Check::warn(name, "asking the relay for a slot", "run doctor again in a few seconds"),
        "refused" => Check::warn(
            name,
            "the relay refused a slot or did not answer (asked again every 30 s)",
            "check that the relay serves circuits (`hive up --relay-service`, go's `-relay`) and has room",
        ),
        _ if reachable => Check::ok(name, "not needed while the node is reachable directly"),
        _ => Check::warn(
            name,
            "not connected to this relay, so no slot",
            "check the relay's address and that it runs (`hive doctor --bootstrap RELAY-ADDR` checks an address)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;
    use serde_json::json;

    #[test]
    fn says_how_the_node_is_reachable_and_what_each_relay_did() {
        let private = json!({"reach": {"mode": "auto", "reachable": false, "autonat": "private",
            "confirmed_addrs": [], "relays": [{"peer_id": "R", "state": "refused"}]}});
        let c = checks(&private);
        assert_eq!((c[0].status, c[1].status), (Status::Warn, Status::Warn));
        assert!(
            c[0].fix.as_deref().unwrap_or("").contains("--relay"),
            "{c:?}"
        );
        let relayed = json!({"reach": {"mode": "auto", "reachable": false, "confirmed_addrs": [],
            "relays": [{"peer_id": "R", "state": "reserved", "addr": "/ip4/1.2.3.4/tcp/1/p2p/R/p2p-circuit"}]}});
        let c = checks(&relayed);
        assert_eq!((c[0].status, c[1].status), (Status::Ok, Status::Ok));
        assert!(c[0].detail.contains("through /ip4/1.2.3.4"), "{c:?}");
        let public = json!({"reach": {"mode": "public", "reachable": true, "confirmed_addrs": [], "relays": []}});
        assert_eq!(checks(&public)[0].status, Status::Ok);
        assert_eq!(checks(&json!({}))[0].status, Status::Warn, "an old daemon");
    }
}
