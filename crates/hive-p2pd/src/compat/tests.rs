use std::time::Duration;

use hive_node::config::{Reachability, RelayService};

use super::parse::parse_go_duration;
use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn hivemind_command_line_is_accepted() {
    let (hive, go) = split_args(args(&[
        "p2pd",
        "-autoRelay=0",
        "-autonat=1",
        "-b=0",
        "-connManager=1",
        "-idleTimeout=30s",
        "-listen=/unix/tmp/hivemind-p2pd-x.sock",
        "-natPortMap=1",
        "-relay=1",
        "-relayHopLimit=0",
        "-tls=1",
        "-persistentConnMaxMsgSize=4194304",
        "-dhtServer=1",
        "-hostAddrs=/ip4/127.0.0.1/tcp/0",
    ]))
    .unwrap();
    assert_eq!(hive, args(&["p2pd"]));
    let go = go.unwrap();
    assert_eq!(
        go.control,
        ControlAddr::Unix("/tmp/hivemind-p2pd-x.sock".into())
    );
    assert_eq!(go.host_addrs, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    assert!(!go.quiet);
    assert!(go.relay && go.relay_service);
    assert_eq!(go.reachability, Reachability::Auto);
}

#[test]
fn relay_flags_configure_the_relay() {
    let (_, go) = split_args(args(&[
        "p2pd",
        "-relay",
        "-forceReachabilityPublic",
        "-relayDataLimit=1024",
        "-relayMaxCircuits",
        "3",
        "-relayMaxReservations=7",
        "-announceAddrs=/ip4/192.0.2.1/tcp/4001",
    ]))
    .unwrap();
    let go = go.unwrap();
    assert_eq!(go.reachability, Reachability::Public);
    assert_eq!(go.relay_limits.max_circuit_bytes, 1024);
    assert_eq!(go.relay_limits.max_circuits_per_peer, 3);
    assert_eq!(go.relay_limits.max_reservations, 7);
    assert_eq!(go.announce.len(), 1);
    assert_eq!(
        go.relay_limits.max_circuit_duration,
        RelayService::default().max_circuit_duration
    );
    let (_, go) = split_args(args(&["p2pd", "-relay=false"])).unwrap();
    assert!(!go.unwrap().relay);
    let e = split_args(args(&["p2pd", "-relayMaxCircuits=lots"])).unwrap_err();
    assert!(e.to_string().contains("not a number"), "{e}");
}

#[test]
fn separate_values_and_hive_flags_mix() {
    let (hive, go) = split_args(args(&[
        "p2pd",
        "-listen",
        "/unix/tmp/a.sock",
        "-q",
        "--data-dir",
        "/tmp/d",
        "-bootstrapPeers",
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb",
    ]))
    .unwrap();
    assert_eq!(hive, args(&["p2pd", "--data-dir", "/tmp/d"]));
    let go = go.unwrap();
    assert!(go.quiet);
    assert_eq!(go.bootstrap.len(), 1);
}

#[test]
fn unsupported_flags_get_clear_errors() {
    let e = split_args(args(&["p2pd", "-frobnicate"])).unwrap_err();
    assert!(e.to_string().contains("unknown flag -frobnicate"), "{e}");
    let e = split_args(args(&["p2pd", "-pubsubRouter=randomsub"])).unwrap_err();
    assert!(e.to_string().contains("gossipsub or floodsub"), "{e}");
    assert!(split_args(args(&["p2pd", "-pubsubRouter=floodsub"])).is_ok());
    let e = split_args(args(&["p2pd", "-b=maybe"])).unwrap_err();
    assert!(e.to_string().contains("boolean"), "{e}");
    assert!(split_args(args(&["p2pd", "-listen"])).is_err());
}

#[test]
fn pubsub_dht_muxer_and_metrics_flags() {
    let (_, go) = split_args(args(&[
        "p2pd",
        "-pubsubSign=false",
        "-pubsubSignStrict=false",
        "-dhtClient",
        "-gossipsubHeartbeatInterval=1s",
        "-muxer=yamux",
        "-metricsAddr=127.0.0.1:9090",
    ]))
    .unwrap();
    let go = go.unwrap();
    assert!(!go.pubsub_sign && !go.pubsub_strict && go.dht_client);
    assert_eq!(go.gossipsub_heartbeat, Some(Duration::from_secs(1)));
    assert_eq!(go.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
    let metrics = |v: &str| split_args(args(&["p2pd", &format!("-metricsAddr={v}")]));
    assert_eq!(
        metrics("/ip4/127.0.0.1/tcp/9091")
            .unwrap()
            .1
            .unwrap()
            .metrics_addr,
        Some("127.0.0.1:9091".parse().unwrap())
    );
    assert_eq!(
        metrics(":9092").unwrap().1.unwrap().metrics_addr,
        Some("0.0.0.0:9092".parse().unwrap())
    );
    assert!(metrics("/ip4/127.0.0.1/udp/1").is_err());
    let e = split_args(args(&["p2pd", "-pubsubSign=false"])).unwrap_err();
    assert!(e.to_string().contains("-pubsubSignStrict=false"), "{e}");
    let e = split_args(args(&["p2pd", "-muxer=mplex"])).unwrap_err();
    assert!(e.to_string().contains("yamux only"), "{e}");
    let (_, go) = split_args(args(&[
        "p2pd",
        "-persistentConnMaxMsgSize=16777216",
        "-b",
        "-tls=false",
    ]))
    .unwrap();
    let go = go.unwrap();
    assert_eq!(go.persistent_max_msg, 16 << 20);
    assert_eq!(go.notices.len(), 1, "{:?}", go.notices);
    assert!(go.noise && !go.tls, "-tls=false leaves Noise alone");
    let e = split_args(args(&["p2pd", "-tls=false", "-noise=false"])).unwrap_err();
    assert!(e.to_string().contains("no security protocol"), "{e}");
    assert!(split_args(args(&["p2pd", "-persistentConnMaxMsgSize=0"])).is_err());
    let e = split_args(args(&["p2pd", "-f", "conf.json"])).unwrap_err();
    assert!(e.to_string().contains("no JSON config"), "{e}");
}

#[test]
fn go_durations_parse() {
    let d = |v: &str| parse_go_duration("x", v);
    assert_eq!(d("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(d("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(d("1.5h").unwrap(), Duration::from_secs(5400));
    assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(d("0").unwrap(), Duration::ZERO);
    assert_eq!(d("45").unwrap(), Duration::from_secs(45));
    for bad in ["", "s", "10x", "1m-3s", "-5"] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
    let (_, go) = split_args(args(&["p2pd", "-idleTimeout=2m", "-relayTimeLimit=1h"])).unwrap();
    let go = go.unwrap();
    assert_eq!(go.idle_timeout, Duration::from_secs(120));
    assert_eq!(
        go.relay_limits.max_circuit_duration,
        Duration::from_secs(3600)
    );
    let e = split_args(args(&["p2pd", "-trustedRelays=/ip4/127.0.0.1/tcp/1"])).unwrap_err();
    assert!(e.to_string().contains("/p2p/"), "{e}");
}

#[test]
fn no_go_flags_means_hive_mode() {
    let (hive, go) = split_args(args(&["hive-p2pd", "--ipc", "127.0.0.1:0"])).unwrap();
    assert_eq!(hive.len(), 3);
    assert!(go.is_none());
}
