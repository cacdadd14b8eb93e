// Builds dn.js and its inline loader from snippet/ with the minifier pinned in
// package-lock.json. Same sources and same terser give the same bytes: tests check that the
// committed builds (ingest/collector/static/) are what this script makes.
//
//   node snippet/build.mjs           write the builds
//   node snippet/build.mjs --stdout  print {"dn.js": ..., "loader.js": ...} as JSON instead
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
if (process.argv.includes("--stdout")) {
  process.stdout.write(JSON.stringify(built));
} else {
  for (const [name, code] of Object.entries(built)) writeFileSync(join(out, name), code);
}
