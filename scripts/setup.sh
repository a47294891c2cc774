#!/usr/bin/env bash
# Installs everything oc-sync needs to build and test, then builds the native addon.
# README: "Build and test", command 1 of 2 (`npm run setup` runs this too).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: node not found; install Node.js 20 or newer" >&2; exit 1; }
command -v git >/dev/null || { echo "setup: git not found; the end-to-end tests need git" >&2; exit 1; }

echo "==> npm ci (napi-rs CLI, the real OpenCode binary opencode-ai, plugin types)"
npm ci --no-audit --no-fund

echo "==> building the native addon (release)"
npx napi build --platform --release --manifest-path napi/Cargo.toml --package-json-path package.json \
  --output-dir . --js index.js --dts index.d.ts

echo "==> checking the OpenCode binary"
node __test__/harness/opencode-bin.mjs --version
echo "setup done"
