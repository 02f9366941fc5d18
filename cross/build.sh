#!/usr/bin/env bash
# Builds edge-agent for an ARM head unit without Docker, and reports what was
# built: the path, the size, and the glibc floor (the newest GLIBC_ symbol
# version it needs, read with objdump -T).
#
#   cross/build.sh [--gcc] [--profile dist|release] TARGET...
#
# TARGET: aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf,
#         aarch64-unknown-linux-musl.
#
# The default route is cargo-zigbuild with the glibc floor pinned to
# $GLIBC_FLOOR (2.28: Debian 10, Ubuntu 20.04, Yocto 2.6 "thud" and newer), which
# is what the packages ship. --gcc uses Debian's cross gcc and the linker and
# runner settings of .cargo/config.toml instead (the everyday dev loop; the
# floor is then the cross sysroot's, 2.34 on Debian 12). The musl target is
# static and has no floor. Install the tools with cross/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_FLOOR="${GLIBC_FLOOR:-2.28}"
route=zig
profile=dist
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gcc) route=gcc ;;
    --profile) profile=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || { echo "usage: cross/build.sh [--gcc] [--profile P] TARGET..." >&2; exit 2; }

target_dir="${CARGO_TARGET_DIR:-target}"

objdump_for() {
  case "$1" in
    aarch64-*) echo aarch64-linux-gnu-objdump ;;
    armv7-*) echo arm-linux-gnueabihf-objdump ;;
  esac
}

# The newest GLIBC_x.y the binary asks the dynamic linker for ("none" if static).
glibc_floor() {
  local objdump; objdump=$(objdump_for "$1")
  "$objdump" -T "$2" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 | grep . || echo none
}

for target in "${targets[@]}"; do
  case "$target" in
    aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf|aarch64-unknown-linux-musl) ;;
    *) echo "unsupported target $target" >&2; exit 2 ;;
  esac
  started=$(date +%s)
  if [ "$route" = gcc ]; then
    [ "$target" != aarch64-unknown-linux-musl ] || { echo "the musl target builds with zig (drop --gcc)" >&2; exit 2; }
    cargo build --locked --profile "$profile" -p edge-agent --target "$target"
  elif [ "$target" = aarch64-unknown-linux-musl ]; then
    cargo zigbuild --locked --profile "$profile" -p edge-agent --target "$target"
  else
    cargo zigbuild --locked --profile "$profile" -p edge-agent --target "$target.$GLIBC_FLOOR"
  fi
  bin="$target_dir/$target/$profile/edge-agent"
  floor=$(glibc_floor "$target" "$bin")
  size=$(stat -c %s "$bin")
  stripped=$size
  if [ "$profile" != dist ]; then
    tmp=$(mktemp); "$(objdump_for "$target" | sed 's/objdump$/strip/')" -o "$tmp" "$bin"; stripped=$(stat -c %s "$tmp"); rm -f "$tmp"
  fi
  echo "built $bin ($route, profile $profile) in $(( $(date +%s) - started )) s"
  echo "  size $size bytes, stripped $stripped bytes ($(awk "BEGIN{printf \"%.1f\", $stripped/1048576}") MiB)"
  echo "  glibc floor: $floor"
done
