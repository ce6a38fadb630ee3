"""What a sandbox costs a local node: N isolated nodes against N unisolated ones, started side by side.

Each run makes N nodes in one bulk create of the ``local`` provider (each node's SSH server listening and
its identity recorded: what ``up`` waits for before it connects), runs one command on every node over
SSH, then terminates them all.  Isolated nodes get their namespaces, the overlay root, the private
/tmp and /run, and cgroup limits (``--size``); unisolated ones are the same OpenSSH servers on the host.
Runs alternate between the two kinds, so that a busy machine slows both alike; the table shows medians
and the ratio isolated / unisolated.

    .venv/bin/python bench/isolation.py                 # 100 nodes, 5 runs of each (root, OpenSSH sshd)
    .venv/bin/python bench/isolation.py --nodes 20 --runs 3 --json /tmp/isolation.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

from cloudherd.providers.base import CreateRequest
from cloudherd.providers.local import LocalProvider
from cloudherd.providers.local import sandbox as local_sandbox


async def one_run(root: Path, isolation: str, nodes: int, size: str | None) -> dict[str, float]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    provider = LocalProvider("local", {"root": str(root), "server": "openssh", "isolation": isolation})
    started = time.perf_counter()
    made = await provider.create(CreateRequest(count=nodes, image=None, size=size, tags={"bench": isolation},
                                               ssh_user="root", ssh_public_key=key.export_public_key().decode()))
    created = time.perf_counter()
    try:
        if isolation == "required":
            assert all(m.extra["isolated"] for m in made)

        async def run(instance: object) -> str:
            async with asyncssh.connect(instance.address, port=instance.port,  # type: ignore[attr-defined]
                                        username=instance.ssh_user,  # type: ignore[attr-defined]
                                        client_keys=[key], known_hosts=None, config=[], agent_path=None) as conn:
                return str((await conn.run("hostname", check=True)).stdout).strip()

        names = await asyncio.gather(*(run(m) for m in made))
        answered = time.perf_counter()
        if isolation == "required":
            assert sorted(names) == sorted(m.name for m in made), "each isolated node names its own host"
    finally:
        before_terminate = time.perf_counter()
        await provider.terminate([m.id for m in made])
        ended = time.perf_counter()
    return {"create": created - started, "first_command": answered - created, "terminate": ended - before_terminate,
            "total": ended - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="small", help="size of the isolated nodes (cgroup limits); 'host': none")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reason = local_sandbox.unavailable()
    if reason:
        print(f"cannot sandbox nodes here: {reason}", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {"none": [], "required": []}
    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-iso-") as tmp:
        os.environ["CLOUDHERD_HOME"] = str(Path(tmp) / "home")
        root = Path(tmp) / "nodes"
        for isolation in ("none", "required"):  # warm-up: page cache, sshd binary, cgroup folders
            asyncio.run(one_run(root, isolation, min(args.nodes, 5), None))
        for run in range(args.runs):
            for isolation in (("none", "required") if run % 2 == 0 else ("required", "none")):
                size = args.size if isolation == "required" and args.size != "host" else None
                results[isolation].append(asyncio.run(one_run(root, isolation, args.nodes, size)))
    print(f"{args.nodes} local nodes (OpenSSH sshd), median of {args.runs} runs each, seconds")
    print(f"{'phase':<15}{'unisolated':>12}{'isolated':>12}{'ratio':>8}")
    summary = {}
    for phase in ("create", "first_command", "terminate", "total"):
        plain = statistics.median(r[phase] for r in results["none"])
        boxed = statistics.median(r[phase] for r in results["required"])
        summary[phase] = {"unisolated": plain, "isolated": boxed, "ratio": boxed / plain if plain else None}
        print(f"{phase:<15}{plain:>12.2f}{boxed:>12.2f}{boxed / plain if plain else float('nan'):>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"nodes": args.nodes, "runs": args.runs, "phases": summary,
                                         "raw": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
