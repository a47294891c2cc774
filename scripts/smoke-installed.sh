#!/usr/bin/env bash
# Installs the packed tarballs in DIST (scripts/pack.mjs) into an empty folder with a clean HOME, the
# way a user does, and checks that the `oc-sync` command and the native module work on this machine.
# On Linux it also checks the installed module's glibc floor (scripts/check-glibc.sh; needs objdump).
# Used by the release workflow on each platform's own runner (and in old-glibc Linux containers).
# Usage: bash scripts/smoke-installed.sh DIST
set -euo pipefail
dist="$(cd "${1:?usage: smoke-installed.sh DIST}" && pwd)"
scripts="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" npm_config_cache="$work/npm-cache" npm_config_update_notifier=false
mkdir -p "$HOME" "$work/app"

platform="$(node -p 'const l = process.platform === "linux" ? "-gnu" : process.platform === "win32" ? "-msvc" : ""; `${process.platform}-${process.arch}${l}`')"
shopt -s nullglob
main=("$dist"/oc-sync-[0-9]*.tgz)
native=("$dist"/oc-sync-"$platform"-[0-9]*.tgz)
[ ${#main[@]} -eq 1 ] && [ ${#native[@]} -eq 1 ] || { echo "smoke: need one oc-sync and one oc-sync-$platform tarball in $dist" >&2; exit 1; }

cd "$work/app"
# --offline: nothing from the registry (the other platforms' packages are skipped as optional).
npm install --offline --no-audit --no-fund "${main[0]}" "${native[0]}"
[ ! -e node_modules/oc-sync/"oc-sync.$platform.node" ] || { echo "smoke: the main package ships a native module" >&2; exit 1; }
node -e 'const m = require("oc-sync"); if (typeof m.runCli !== "function") { console.error("smoke: no runCli"); process.exit(1) }'
npx --no-install oc-sync --version
npx --no-install oc-sync paths
if [ "$(uname -s)" = Linux ]; then
  command -v objdump >/dev/null || { echo "smoke: objdump not found; install binutils" >&2; exit 1; }
  bash "$scripts/check-glibc.sh" "$work/app/node_modules/oc-sync-$platform/oc-sync.$platform.node"
fi
echo "smoke: oc-sync-$platform installs and runs on $(node -p '[process.platform, process.arch, process.report.getReport().header.glibcVersionRuntime ?? ""].join(" ")')"
