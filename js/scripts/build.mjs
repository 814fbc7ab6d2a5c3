// Bundle the views into src/livewidgets/static/ (ESM, one file per widget, plus
// style.css). The output is committed so `pip install` needs no Node.
//
//   npm --prefix js run build            write the files
//   npm --prefix js run build -- --check exit 1 if the committed files are stale
//
// Each output starts with a banner holding a hash of js/src, which
// tests/js/test_js_build.py recomputes (without Node) to catch a forgotten build.

import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const SRC = resolve(here, "..", "src");
const OUT = resolve(here, "..", "..", "src", "livewidgets", "static");
export const WIDGETS = [
  "shared_text",
  "presence",
  "connection_status",
  "poll",
  "chat",
  "state_inspector",
  "conflict_resolver",
  "answer_box",
  "history",
];

/** sha256 over js/src (sorted names, each "name\0content\0"); same as the Python test. */
export function sourceHash() {
  const hash = createHash("sha256");
  for (const name of readdirSync(SRC).sort()) {
    hash.update(name);
    hash.update("\0");
    hash.update(readFileSync(join(SRC, name)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

async function outputs() {
  const banner = `/* livewidgets build: sources sha256:${sourceHash()} (esbuild ${esbuild.version}) */`;
  const files = new Map();
  for (const name of WIDGETS) {
    const result = await esbuild.build({
      entryPoints: [join(SRC, `${name}.js`)],
      bundle: true,
      format: "esm",
      target: "es2020",
      write: false,
      legalComments: "none",
      charset: "utf8",
      banner: { js: banner },
    });
    files.set(`${name}.js`, result.outputFiles[0].text);
  }
  files.set("style.css", `${banner}\n${readFileSync(join(SRC, "style.css"), "utf8")}`);
  return files;
}

const check = process.argv.includes("--check");
const files = await outputs();
let stale = 0;
mkdirSync(OUT, { recursive: true });
for (const [name, text] of files) {
  const path = join(OUT, name);
  const current = existsSync(path) ? readFileSync(path, "utf8") : null;
  if (current === text) continue;
  stale += 1;
  if (check) console.error(`stale: src/livewidgets/static/${name}`);
  else writeFileSync(path, text);
}
if (check && stale) {
  console.error("run `npm --prefix js run build` and commit src/livewidgets/static/");
  process.exit(1);
}
console.log(
  check ? "static build is up to date" : `built ${files.size} files (${stale} changed) into ${OUT}`,
);
