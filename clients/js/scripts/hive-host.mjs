// Starts a real `hive up` on loopback, as a user would, for the type
// generator and the tests: its own temporary data directory, an HTTP port
// and a TCP port picked by the kernel, no mDNS. The host prints one JSON line
// on stdout once it listens, `{"event":"listening","http":"http://..."}`.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** Where `hive` and `hive-p2pd` are: `$HIVE_BIN_DIR`, else `<repo>/target/debug`. */
export function binDir() {
  // scripts/ sits two levels below clients/js, and clients/js two below the
  // repository; this file is also run from .build/scripts/ (one level more).
  const repo = existsSync(join(here, "..", "package.json"))
    ? resolve(here, "..", "..", "..")
    : resolve(here, "..", "..", "..", "..");
  return process.env.HIVE_BIN_DIR ? resolve(process.env.HIVE_BIN_DIR) : join(repo, "target", "debug");
}

/**
 * @typedef {object} RunningHost
 * @property {string} api Base URL of the HTTP API, e.g. `http://127.0.0.1:41234`.
 * @property {string} dataDir
 * @property {import("node:child_process").ChildProcess} child
 * @property {(opts?: { keepData?: boolean }) => Promise<void>} stop Stops the host (SIGTERM, then
 *   SIGKILL after 15 s) and removes its data directory unless `keepData`.
 */

/**
 * @param {{ args?: string[], env?: Record<string, string>, dataDir?: string, http?: string }} [opts]
 *   `dataDir`: start on an existing data directory (a restart); `http`: the
 *   API's address (default 127.0.0.1:0).
 * @returns {Promise<RunningHost>}
 */
export async function startHost(opts = {}) {
  const bins = binDir();
  const hive = join(bins, "hive");
  if (!existsSync(hive)) {
    throw new Error(`${hive} not built: run \`cargo build --workspace --bins\` or set HIVE_BIN_DIR`);
  }
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "hive-js-"));
  const args = [
    "up",
    "--data-dir", dataDir,
    "--http", opts.http ?? "127.0.0.1:0",
    "--listen", "/ip4/127.0.0.1/tcp/0",
    "--no-mdns",
    "--daemon-bin", join(bins, "hive-p2pd"),
    ...(opts.args ?? []),
  ];
  const child = spawn(hive, args, {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", ...(opts.env ?? {}) },
  });
  const exited = new Promise((res) => child.once("exit", res));
  const stop = async (/** @type {{ keepData?: boolean }} */ how = {}) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (!how.keepData) rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const api = await listeningLine(child);
    return { api, dataDir, child, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** @param {import("node:child_process").ChildProcess} child */
function listeningLine(child) {
  return new Promise((res, rej) => {
    if (!child.stdout) return rej(new Error("hive up: no stdout"));
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => rej(new Error("hive up printed no listening line within 60 s")), 60_000);
    const fail = (/** @type {unknown} */ why) => {
      clearTimeout(timer);
      rej(new Error(`hive up exited before listening (${String(why)})`));
    };
    child.once("exit", (code, signal) => fail(signal ?? code));
    child.once("error", fail);
    lines.once("line", (line) => {
      clearTimeout(timer);
      child.off("exit", fail);
      // Keep reading stdout so that the host never blocks on a full pipe.
      lines.on("line", () => {});
      try {
        const v = JSON.parse(line);
        if (typeof v.http !== "string") throw new Error("no http field");
        res(v.http);
      } catch (e) {
        rej(new Error(`hive up's first line is not the listening line: ${line} (${String(e)})`));
      }
    });
  });
}
