//! What a real host serves stays inside what `/openapi.json` declares: every
//! field of every JSON answer of every documented GET (per-node copies
//! included) is a property of the schema the document gives for it. Clients generated from the document
//! (clients/js, anyone's openapi-generator) otherwise drop or reject fields
//! the host sends; `daemon_version` in `/api/status` and `connected_secs` in
//! `/api/peers` were served undeclared until this test. (REQ-OBS-1)

use hive_tests::{wait_for, Host, HostOpts};
use serde_json::Value;

/// Follows `{"$ref": "#/components/schemas/X"}` (and a one-element `allOf`,
/// `oneOf` or `anyOf`, which utoipa emits for `Option<Struct>`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(list) = schema[key].as_array() {
            let concrete: Vec<&Value> = list.iter().filter(|s| s["type"] != "null").collect();
            if let [one] = concrete.as_slice() {
                return resolve(doc, one);
            }
        }
    }
    schema
}

/// Paths (like `peers[0].connected_secs`) of fields `value` has and
/// `schema` does not declare. A schema without `properties` (free-form
/// object, `additionalProperties`) declares anything.
fn undeclared(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    match value {
        Value::Object(fields) => {
            let Some(props) = schema["properties"].as_object() else {
                return;
            };
            for (name, v) in fields {
                match props.get(name) {
                    Some(s) => undeclared(doc, s, v, &format!("{at}.{name}"), out),
                    None => out.push(format!("{at}.{name}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                undeclared(doc, &schema["items"], v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_fields_are_all_declared_in_the_openapi_document() -> anyhow::Result<()> {
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..HostOpts::default()
    })
    .await?;
    b.wait_healthy().await?;
    // A peer, a topic, a stored message: the optional fields appear.
    let b_id = b.peer_id().await?;
    a.subscribe("schema").await?;
    b.subscribe("schema").await?;
    a.wait_topic_peers("schema", 1).await?;
    a.publish("schema", b"fields".to_vec()).await?;
    wait_for("b to store a's message", || async {
        let page = b.get("/api/messages?topic=schema").await.ok()?;
        (!page["messages"].as_array()?.is_empty()).then_some(())
    })
    .await?;
    wait_for("a to see b with connected_secs", || async {
        let peers = a.get("/api/peers").await.ok()?;
        peers
            .as_array()?
            .iter()
            .any(|p| p["peer_id"] == b_id.as_str() && p["connected_secs"].is_number())
            .then_some(())
    })
    .await?;

    let doc = a.get("/openapi.json").await?;
    let mut found = Vec::new();
    let mut checked = Vec::new();
    // Every GET the document gives a JSON answer for, on both hosts (b
    // stored a message, a has a peer with its optional fields).
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let schema = &item["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        if !schema.is_object() {
            continue;
        }
        let url = path.replace("{id}", "n0");
        assert!(
            !url.contains('{'),
            "{path}: a path parameter this test cannot fill"
        );
        for (name, host) in [("a", &a), ("b", &b)] {
            let served = host.get(&url).await?;
            undeclared(&doc, schema, &served, &format!("{name}:{url}"), &mut found);
        }
        checked.push(url);
    }
    for path in [
        "/api/status",
        "/api/peers",
        "/api/topics",
        "/api/outbox",
        "/api/tension",
        "/api/nodes",
        "/api/nodes/n0",
        "/api/messages",
        "/api/whoami",
        "/api/nodes/n0/status",
    ] {
        assert!(
            checked.iter().any(|c| c == path),
            "{path}: no 200 JSON schema in the document (checked {checked:?})"
        );
    }
    assert!(
        found.is_empty(),
        "served but not in /openapi.json: {found:?}"
    );
    Ok(())
}
