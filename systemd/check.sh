#!/usr/bin/env bash
# Checks both units offline:
# - `systemd-analyze verify`, in a temporary root holding the host's unit tree,
#   the units, and the real binaries at the units' paths. verify exits 0 even
#   on an unknown key or a bad value, so any output on stderr fails the check.
# - `systemd-analyze security --offline=true`: prints each unit's exposure and
#   fails above MAX_EXPOSURE (2.0; --threshold is on a 0-100 scale).
#
#   systemd/check.sh [BINARY_DIR]     (default: $CARGO_TARGET_DIR/release or target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
bins="${1:-${CARGO_TARGET_DIR:-target}/release}"
MAX_EXPOSURE="${MAX_EXPOSURE:-2.0}"
units=(edge-agent cloud-bridge)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
for dir in /usr/lib/systemd/system /lib/systemd/system; do
  if [ -d "$dir" ]; then cp -a "$dir" "$root/usr/lib/systemd/"; break; fi
done
for unit in "${units[@]}"; do
  [ -x "$bins/$unit" ] || { echo "$bins/$unit is missing: build it first" >&2; exit 1; }
  install -m 0755 "$bins/$unit" "$root/usr/bin/$unit"
  install -m 0644 "systemd/$unit.service" "$root/usr/lib/systemd/system/$unit.service"
done

status=0
errors=$(systemd-analyze verify --root="$root" "${units[@]/%/.service}" 2>&1 >/dev/null) || status=$?
if [ -n "$errors" ] || [ "$status" -ne 0 ]; then
  echo "systemd-analyze verify failed (exit $status):" >&2
  echo "$errors" >&2
  exit 1
fi
echo "systemd-analyze verify: ${units[*]} clean"

threshold=$(awk "BEGIN{printf \"%d\", $MAX_EXPOSURE * 10}")
for unit in "${units[@]}"; do
  out=$(systemd-analyze security --offline=true --threshold="$threshold" "systemd/$unit.service" 2>&1) || {
    echo "$out" | tail -1 >&2
    echo "$unit.service: exposure above $MAX_EXPOSURE" >&2
    exit 1
  }
  echo "$out" | grep 'Overall exposure level' | sed "s/^→ /$unit: /"
done
