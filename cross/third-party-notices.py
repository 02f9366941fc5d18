#!/usr/bin/env python3
"""Writes the third-party notices shipped with edge-agent's packages.

Every crate linked into the edge-agent binary for TARGET (normal dependencies
only: build scripts, proc macros and tests do not ship) is listed with its
version, licence expression and source, followed by the licence and notice
files the crate itself carries (LICENSE*, LICENCE*, COPYING*, NOTICE*,
COPYRIGHT*), each distinct text once. The encoder the shipped model derives
from comes first.

    cross/third-party-notices.py TARGET OUT
"""

import hashlib
import json
import os
import subprocess
import sys

ENCODER = """\
== The shipped intent and sentiment model ==

models/compact (installed in /usr/share/edge-agent/models/compact) is derived by
this project from the sentence encoder all-MiniLM-L6-v2 (sentence-transformers,
https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2), licensed under
the Apache License, Version 2.0 (the text is below, under the crates that carry
it). The static token embeddings were distilled from it (Model2Vec recipe) and
its WordPiece vocabulary (tokenizer.json) comes from it; the classification
heads were trained by this project on its own corpus. See
/usr/share/doc/edge-agent/MODEL_CARD.md.
"""

LICENSE_PREFIXES = ("license", "licence", "copying", "notice", "copyright", "unlicense")


def shipped_packages(target):
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target]
        )
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == "edge-agent" and p["source"] is None)
    seen, stack = set(), [root]
    while stack:
        node = nodes[stack.pop()]
        for dep in node["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
    members = set(meta["workspace_members"])
    return sorted(
        (packages[i] for i in seen if i not in members),
        key=lambda p: (p["name"], p["version"]),
    )


def licence_files(package):
    folder = os.path.dirname(package["manifest_path"])
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and name.lower().startswith(LICENSE_PREFIXES):
            found.append(path)
    if package.get("license_file"):
        path = os.path.join(folder, package["license_file"])
        if os.path.isfile(path) and path not in found:
            found.append(path)
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    target, out = sys.argv[1], sys.argv[2]
    packages = shipped_packages(target)
    texts = {}  # digest -> (text, [crates])
    lines = [
        "Third-party notices for edge-agent",
        "",
        "edge-agent is licensed under the Apache License, Version 2.0",
        "(/usr/share/doc/edge-agent/copyright). It contains the works below.",
        "",
        ENCODER,
        f"== Crates linked into the binary ({len(packages)}, for {target}) ==",
        "",
    ]
    without_files = []
    for package in packages:
        source = package.get("repository") or "crates.io"
        lines.append(f"{package['name']} {package['version']}  licence: {package.get('license') or 'see its files'}  source: {source}")
        files = licence_files(package)
        if not files:
            without_files.append(package)
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read().strip()
            digest = hashlib.sha256(text.encode()).hexdigest()
            texts.setdefault(digest, (text, []))[1].append(f"{package['name']} {package['version']} ({os.path.basename(path)})")
    lines.append("")
    if without_files:
        lines.append("These crates carry no licence file; their licence is the SPDX expression above:")
        lines.extend(f"  {p['name']} {p['version']}: {p.get('license')}" for p in without_files)
        lines.append("")
    lines.append(f"== Licence and notice texts ({len(texts)} distinct) ==")
    for text, crates in texts.values():
        lines.append("")
        lines.append("-" * 78)
        lines.append("Carried by: " + ", ".join(crates))
        lines.append("-" * 78)
        lines.append(text)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{out}: {len(packages)} crates, {len(texts)} distinct licence texts, {len(without_files)} without a licence file")


if __name__ == "__main__":
    main()
