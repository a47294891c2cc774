#!/usr/bin/env bash
# Fails when a Linux glibc native module needs a newer glibc than the floor oc-sync promises.
# Usage: bash scripts/check-glibc.sh [FILE.node ...]   (default: every *-gnu.node in the repo root)
# The floor is GLIBC_FLOOR (default 2.17, what scripts/setup.sh builds against with zig); the check
# reads the versioned symbols the module imports (`objdump -T`), so it needs binutils.
set -euo pipefail
files=()
for f in "$@"; do files+=("$(cd "$(dirname "$f")" 2>/dev/null && pwd)/$(basename "$f")"); done
cd "$(dirname "$0")/.."

floor="${GLIBC_FLOOR:-2.17}"
command -v objdump >/dev/null || { echo "check-glibc: objdump not found; install binutils (apt-get install binutils)" >&2; exit 1; }

if [ ${#files[@]} -eq 0 ]; then
  shopt -s nullglob
  files=(./*.linux-*-gnu*.node)
  shopt -u nullglob
fi
[ ${#files[@]} -gt 0 ] || { echo "check-glibc: no Linux glibc native module found; run: bash scripts/setup.sh" >&2; exit 1; }

status=0
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "check-glibc: $f does not exist" >&2; status=1; continue; }
  symbols=$(objdump -T "$f") || { echo "check-glibc: objdump cannot read $f" >&2; status=1; continue; }
  highest=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sed 's/^GLIBC_//' | sort -uV | tail -n1)
  [ -n "$highest" ] || { echo "check-glibc: $f imports no versioned glibc symbol; is it a glibc build?" >&2; status=1; continue; }
  if [ "$(printf '%s\n%s\n' "$highest" "$floor" | sort -V | tail -n1)" != "$floor" ]; then
    echo "check-glibc: $f needs glibc $highest, above the floor $floor; these symbols are too new:" >&2
    while read -r line; do
      v=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$line" | sed 's/^GLIBC_//')
      [ "$(printf '%s\n%s\n' "$v" "$floor" | sort -V | tail -n1)" = "$floor" ] || echo "  GLIBC_$v ${line##* }" >&2
    done < <(grep 'GLIBC_[0-9]' <<<"$symbols")
    echo "Build it with zig against glibc $floor: bash scripts/setup.sh (see README, Build and test)" >&2
    status=1
  else
    echo "check-glibc: $f needs glibc $highest at most (floor $floor): ok"
  fi
done
exit $status
