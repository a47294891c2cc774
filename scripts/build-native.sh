#!/usr/bin/env bash
# Builds the native module (release) for one Rust target into the repo root as
# oc-sync.<platform>.node, and regenerates index.js / index.d.ts.
# Usage: bash scripts/build-native.sh [RUST_TARGET]   (default: this machine's target)
#
# Linux glibc targets are built with zig (cargo-zigbuild) against glibc $GLIBC_FLOOR (default 2.17),
# so the module loads on old distributions (Ubuntu 18.04+, Debian 9+, RHEL/CentOS 7+, Amazon Linux 2);
# scripts/check-glibc.sh checks the result. zig and cargo-zigbuild come from PyPI into .tools/py
# (installed here on first use). Other targets use the plain Rust toolchain of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-$(rustc -vV | sed -n 's/^host: //p')}"
floor="${GLIBC_FLOOR:-2.17}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

napi_args=(--platform --release --manifest-path napi/Cargo.toml --package-json-path package.json
  --output-dir . --js index.js --dts index.d.ts)

case "$target" in
  *-linux-gnu*)
    bash scripts/python-tools.sh
    export PATH="$PWD/.tools/py/bin:$PATH" # cargo-zigbuild, and python3 -m ziglang as its zig
    echo "==> building the native module for $target against glibc $floor (zig)"
    npx napi build "${napi_args[@]}" --cross-compile --target "$target.$floor"
    ;;
  *)
    echo "==> building the native module for $target"
    npx napi build "${napi_args[@]}" --target "$target"
    ;;
esac
