#!/usr/bin/env bash
# Packages the dist build of edge-agent for TARGET as a .deb (cargo-deb): the
# binary, the systemd unit, the default config, the sysusers file, the compact
# model, the default knowledge pack, and the third-party notices. Checks that
# the binary's glibc floor is the one the package's Depends names, that it holds
# every file it must, and that the installed binary finds its model, pack and
# config where the package puts them (under qemu-user, in a bubblewrap view
# of the unpacked package).
#
#   cross/build.sh TARGET && cross/package.sh TARGET
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1
case "$target" in
  aarch64-unknown-linux-gnu) objdump=aarch64-linux-gnu-objdump; qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu) ;;
  armv7-unknown-linux-gnueabihf) objdump=arm-linux-gnueabihf-objdump; qemu=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
  *) echo "packages are made for aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf" >&2; exit 2 ;;
esac
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/$target/dist/edge-agent"
[ -x "$bin" ] || { echo "$bin is missing: run cross/build.sh $target first" >&2; exit 1; }

# The Depends floor must be the binary's real one.
floor=$("$objdump" -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
declared=$(sed -n 's/^depends = "libc6 (>= \([0-9.]*\))"$/\1/p' edge-agent/Cargo.toml)
if [ "$floor" != "$declared" ]; then
  echo "the binary needs glibc $floor but the package declares libc6 (>= $declared)" >&2
  exit 1
fi

python3 cross/third-party-notices.py "$target" edge-agent/dist/generated/THIRD-PARTY-NOTICES
# Stripped by the dist profile already.
deb=$(cargo deb -p edge-agent --target "$target" --profile dist --no-build --no-strip \
  --output "$target_dir/debian/" | tail -1)
echo "package: $deb ($(stat -c %s "$deb") bytes)"
echo "glibc floor of the binary: $floor; $(dpkg-deb --field "$deb" Depends | sed 's/^/Depends: /')"
dpkg-deb --field "$deb" Package Version Architecture
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
for path in usr/bin/edge-agent usr/lib/systemd/system/edge-agent.service etc/edge-agent/config.toml \
    usr/lib/sysusers.d/edge-agent.conf \
    usr/share/edge-agent/models/compact/model.safetensors usr/share/edge-agent/models/compact/tokenizer.json \
    usr/share/edge-agent/models/compact/labels.json usr/share/edge-agent/models/compact/manifest.json \
    usr/share/edge-agent/models/compact/words.txt \
    usr/share/edge-agent/knowledge/kestrel-voyager/pack.toml \
    usr/share/edge-agent/knowledge/kestrel-voyager/articles/warning_lights.toml \
    usr/share/doc/edge-agent/THIRD-PARTY-NOTICES usr/share/doc/edge-agent/copyright \
    usr/share/doc/edge-agent/MODEL_CARD.md usr/share/doc/edge-agent/OEM-GUIDE.md; do
  grep -q " \./$path\$" <<< "$contents" || { echo "the package lacks /$path" >&2; exit 1; }
done
grep -q 'all-MiniLM-L6-v2' edge-agent/dist/generated/THIRD-PARTY-NOTICES || { echo "the notices do not name the encoder" >&2; exit 1; }
if grep -q '#DEBHELPER#' <<< "$(dpkg-deb --info "$deb" postinst)"; then
  echo "postinst still holds #DEBHELPER#" >&2; exit 1
fi

# The installed layout: /usr/share/edge-agent and /etc/edge-agent from the
# package, nothing from this checkout.
root=$(mktemp -d); state=$(mktemp -d); groups=$(mktemp)
trap 'rm -rf "$root" "$state" "$groups"' EXIT
dpkg-deb -x "$deb" "$root"
# The groups the package's sysusers file creates on install (systemd-sysusers),
# added to a copy of this machine's /etc/group for the installed view.
cp /etc/group "$groups"
gid=64000
for group in $(sed -n 's/^g \([^ ]*\) .*/\1/p' "$root/usr/lib/sysusers.d/edge-agent.conf"); do
  grep -q "^$group:" "$groups" || echo "$group:x:$((gid++)):" >> "$groups"
done
installed=$(bwrap --ro-bind / / --dev /dev --proc /proc \
    --tmpfs /usr/share --ro-bind /usr/share/zoneinfo /usr/share/zoneinfo \
    --ro-bind "$root/usr/share/edge-agent" /usr/share/edge-agent \
    --ro-bind "$root" "$root" --bind "$state" "$state" --ro-bind "$groups" /etc/group --chdir / \
    --setenv CONFIGURATION_DIRECTORY "$root/etc/edge-agent" --setenv STATE_DIRECTORY "$state" \
    -- "${qemu[@]}" "$root/usr/bin/edge-agent" validate 2>&1) \
  || { echo "the installed binary's validate failed: $installed" >&2; exit 1; }
echo "installed: $installed"
grep -q 'model ok (/usr/share/edge-agent/models/compact' <<< "$installed" || { echo "the installed binary did not use the packaged model" >&2; exit 1; }
grep -q 'pack ok (kestrel-voyager' <<< "$installed" || { echo "the installed binary did not find the packaged pack" >&2; exit 1; }
