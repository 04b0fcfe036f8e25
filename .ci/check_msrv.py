"""The workspace's rust-version must cover every locked dependency (see .ci/check-msrv)."""
import json
import sys


def ver(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(map(str, v))


meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
ours = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
declared = set(ours.values())
if None in declared or len(declared) != 1:
    sys.exit(f"workspace crates declare different or missing rust-version: {ours}")
msrv = declared.pop()
need = sorted(
    (
        (ver(p["rust_version"]), p["name"], p["version"])
        for p in meta["packages"]
        if p["id"] in resolved and p["id"] not in members and p.get("rust_version")
    ),
    reverse=True,
)
too_new = [n for n in need if n[0] > ver(msrv)]
if too_new:
    listed = ", ".join(f"{name} {version} (Rust {show(v)})" for v, name, version in too_new[:10])
    sys.exit(f"rust-version {msrv} is older than the locked dependencies need: {listed}")
if need:
    v, name, version = need[0]
    print(f"rust-version {msrv} covers every locked dependency (newest need: {name} {version}, Rust {show(v)})")
else:
    print(f"rust-version {msrv}: no locked dependency declares one")
