// Builds dn.js and its inline loader from snippet/ with the minifier pinned in
// package-lock.json. Same sources and same terser give the same bytes: tests check that the
// committed builds (ingest/collector/static/) are what this script makes.
//
//   node snippet/build.mjs           write the builds
//   node snippet/build.mjs --stdout  print {"dn.js": ..., "loader.js": ...} as JSON instead
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { minify } from "terser";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "ingest", "collector", "static");
const options = {
  ecma: 2017,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: /^!/, ascii_only: true },
};

const built = {};
for (const name of ["dn.js", "loader.js"]) {
  const source = readFileSync(join(here, name), "utf8");
  const result = await minify({ [name]: source }, options);
  built[name] = result.code + "\n";
}
// The size budget, measured here as in tests/snippet: dn.js at most 3 KB gzipped, the
// inline loader at most 300 bytes.
const gzipped = gzipSync(built["dn.js"], { level: 9 }).length;
const loader = Buffer.byteLength(built["loader.js"]);
process.stderr.write(`dn.js: ${Buffer.byteLength(built["dn.js"])} bytes, ${gzipped} gzipped ` +
                     `(budget 3072); loader.js: ${loader} bytes (budget 300)\n`);
if (gzipped > 3072 || loader > 300) {
  process.stderr.write("over the size budget\n");
  process.exit(1);
}
if (process.argv.includes("--stdout")) {
  process.stdout.write(JSON.stringify(built));
} else {
  for (const [name, code] of Object.entries(built)) writeFileSync(join(out, name), code);
}
