import { HiveClient } from "hive-p2p";

// A host started with `hive up --api-token "$HIVE_TOKEN"`.
const hive = new HiveClient({
  baseUrl: process.env.HIVE_API ?? "http://127.0.0.1:7700",
  token: process.env.HIVE_TOKEN,
});

console.log("peer id:", (await hive.status()).peer_id);
await hive.subscribe("news");

const events = hive.events(); // reconnects by itself, resuming from its cursor
await events.opened();
console.log("ready");
for await (const event of events) {
  if (event.type === "message" && event.topic === "news") {
    console.log(`${event.from}: ${event.text ?? `${event.data.length} bytes`}`);
    console.log("resume later with hive.events({ after:", events.cursor, "})");
    break; // closes the stream
  }
}
await hive.publish("news", new TextEncoder().encode("thanks!"));
