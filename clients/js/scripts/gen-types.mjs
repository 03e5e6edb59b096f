// See scripts/gen-types.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startHost } from "./hive-host.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(pkg, "src", "openapi.ts");
const args = process.argv.slice(2);
const check = args.includes("--check");
if (args.some((a) => a !== "--check")) {
  console.error("usage: scripts/gen-types [--check]");
  process.exit(2);
}
const generator = join(pkg, "node_modules", ".bin", "openapi-typescript");
if (!existsSync(generator)) {
  console.error(`${generator} is missing: run \`npm ci\` in ${pkg} first`);
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), "hive-gen-types-"));
try {
  const host = await startHost();
  let doc;
  try {
    const r = await fetch(`${host.api}/openapi.json`);
    if (!r.ok) throw new Error(`GET /openapi.json: ${r.status}`);
    doc = await r.text();
  } finally {
    await host.stop();
  }
  const docFile = join(work, "openapi.json");
  writeFileSync(docFile, doc);
  const out = check ? join(work, "openapi.ts") : target;
  execFileSync(generator, [docFile, "--output", out], { stdio: ["ignore", "ignore", "inherit"] });
  if (!check) {
    console.log(`wrote ${target}`);
  } else {
    const committed = existsSync(target) ? readFileSync(target, "utf8") : "";
    if (committed === readFileSync(out, "utf8")) {
      console.log("src/openapi.ts matches the host's /openapi.json");
    } else {
      console.error("src/openapi.ts differs from the types of the host's /openapi.json:");
      spawnSync("diff", ["-u", target, out], { stdio: "inherit" });
      console.error("run clients/js/scripts/gen-types and commit the result");
      process.exitCode = 1;
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
