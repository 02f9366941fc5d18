#!/usr/bin/env bash
# Installs what cross/build.sh needs on a Debian 12 host, without Docker:
# Debian's cross gcc and binutils (the gcc route, and objdump for the glibc
# check), qemu-user (to run the results; binfmt_misc is not needed), the rustup
# targets, and zig (from PyPI) with cargo-zigbuild (the packaged artefacts).
# Idempotent: what is there already is skipped.
set -euo pipefail

need_apt=()
for tool in aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc qemu-aarch64-static qemu-arm-static; do
  command -v "$tool" >/dev/null || need_apt=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
    libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static)
done
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl

if ! python3 -m ziglang version >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check 'ziglang==0.17.1'
fi
if ! command -v cargo-zigbuild >/dev/null; then
  cargo install --locked cargo-zigbuild --version 0.24.1 -q
fi
echo "cross toolchain ready: zig $(python3 -m ziglang version), $(cargo-zigbuild --version)"
