#!/usr/bin/env bash
# Runs a cross-built edge-agent under qemu-user and checks what it says, not
# just that it exits 0: `classify` on a few lines (intents, routes, sentiment,
# a malformed line answered with an error), `validate` (with the CPU features
# candle uses: NEON on aarch64, scalar on armv7), and a scripted `chat` (a
# fuel answer from the live vehicle, a warning light from the knowledge pack).
#
#   cross/smoke.sh TARGET BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1
bin=$2

case "$target" in
  aarch64-unknown-linux-gnu) run=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
  aarch64-unknown-linux-musl) run=(qemu-aarch64-static) ;;
  armv7-unknown-linux-gnueabihf) run=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
  *) echo "unsupported target $target" >&2; exit 2 ;;
esac

fail() { echo "smoke FAILED ($target): $*" >&2; exit 1; }

echo "--- $target: classify"
classified=$(printf '%s\n' \
  '{"text": "how much fuel do I have left?"}' \
  '{"text": "there has been a crash and my passenger is hurt"}' \
  'this is not json' \
  '{"text": "this stupid car keeps beeping and I am sick of it"}' \
  | "${run[@]}" "$bin" classify)
echo "$classified"
[ "$(echo "$classified" | wc -l)" -eq 4 ] || fail "expected 4 output lines"
line() { echo "$classified" | sed -n "$1p"; }
line 1 | grep -q '"intent":"fuel_level"' || fail "line 1 is not fuel_level"
line 1 | grep -q '"route":"local"' || fail "line 1 is not answered locally"
line 2 | grep -q '"intent":"emergency"' || fail "line 2 is not an emergency"
line 2 | grep -q '"route":"urgent"' || fail "the emergency is not routed urgent"
line 3 | grep -q '"error"' || fail "the malformed line got no error"
line 4 | grep -q '"sentiment":"negative"' || fail "line 4 is not negative"

echo "--- $target: validate (and the CPU features candle uses)"
state=$(mktemp -d)
validated=$(EDGE_AGENT__STATE__DIR="$state" "${run[@]}" "$bin" validate 2>&1)
rm -rf "$state"
echo "$validated"
case "$target" in
  aarch64-*) echo "$validated" | grep -q 'neon=true' || fail "candle is not using NEON on aarch64" ;;
  armv7-*) echo "$validated" | grep -q 'neon=false' || fail "expected candle's scalar kernels on armv7" ;;
esac

echo "--- $target: chat"
state=$(mktemp -d)
chat=$(printf '%s\n' 'how much fuel do I have left?' 'what does the red oil can light mean' \
  | EDGE_AGENT__STATE__DIR="$state" "${run[@]}" "$bin" chat)
rm -rf "$state"
echo "$chat"
echo "$chat" | grep -q 'intent fuel_level' || fail "turn 1 is not fuel_level"
echo "$chat" | grep -q 'sources light-oil-pressure' || fail "turn 2 did not answer from the oil-pressure article"
echo "--- $target: smoke passed"
