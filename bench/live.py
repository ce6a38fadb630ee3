"""What open dashboard pages cost ``cloudherd serve``: its CPU while N pages follow one fleet live.

Each open infrastructure page holds a Server-Sent Events stream (``/ui/infrastructures/ID/live``) that
the server feeds with a digest of what the page shows.  The floor is one page: this prints the server's
CPU use (user + system, read from /proc/PID/stat, all threads) over the same window for 1, 10 and 50
pages, and the ratio of each to one page.  One sampler per fleet, shared by every page watching it,
keeps the ratio near 1; a sampler per page would make it grow with N.  To see the peer (cloudherd before
the shared sampler), run this with ``PYTHONPATH`` set to an older checkout's ``src``: the server
subprocess imports from there.

The fleet is NODES recorded node rows without machines (not attached: no manager pass runs), in a
throw-away HOME / CLOUDHERD_HOME / CLOUDHERD_DB; the server is a subprocess on 127.0.0.1, stopped with
SIGTERM by its pid at the end.  Run: ``.venv/bin/python bench/live.py [--window 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import CLOUD, NODES, cloudherd_json, free_port, record_fleet, start, stop, wait_for
from common import cloudherd_command, throwaway_env

PAGES = (1, 10, 50)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def follow(url: str, token: str, pages: int, window: float, pid: int) -> tuple[float, int]:
    """Open ``pages`` streams, wait for each one's first digest, then measure the server's CPU over
    ``window`` seconds; returns (CPU seconds, change messages received)."""
    import httpx

    received = [0]
    first = asyncio.Event()
    opened = [0]

    async def page(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", url, cookies={"cloudherd_session": token}) as answer:
            answer.raise_for_status()
            async for line in answer.aiter_lines():
                if line.startswith("event: change"):
                    received[0] += 1
                    opened[0] += 1
                    if opened[0] == pages:
                        first.set()

    limits = httpx.Limits(max_connections=pages + 5)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(page(client)) for _ in range(pages)]
        await asyncio.wait_for(first.wait(), 60)
        before = cpu_seconds(pid)
        await asyncio.sleep(window)  # the measured window: the streams stay open meanwhile
        used = cpu_seconds(pid) - before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return used, received[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per row")
    args = parser.parse_args()
    import httpx

    with tempfile.TemporaryDirectory(prefix="cloudherd-bench-live-") as tmp:
        folder = Path(tmp)
        env = throwaway_env(folder)
        config = folder / "server.yml"
        config.write_text(f"providers:\n  {CLOUD}: {{type: local}}\ninterval: 3600\n")
        fleet_id = record_fleet(env, folder)
        token = cloudherd_json(["token", "create", "--json"], env)["token"]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        served = start([*cloudherd_command(), "serve", "--config", str(config), "--port", str(port)], env,
                       folder / "serve.log")
        rows: list[tuple[int, float, int]] = []
        try:
            wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "cloudherd serve", served)
            idle_before = cpu_seconds(served.pid)
            asyncio.run(asyncio.sleep(args.window))
            idle = cpu_seconds(served.pid) - idle_before
            for pages in PAGES:
                used, received = asyncio.run(follow(f"{base}/ui/infrastructures/{fleet_id}/live", token, pages,
                                                    args.window, served.pid))
                rows.append((pages, used, received))
                print(f"  {pages:>3} page(s): {used:6.2f} s CPU", file=sys.stderr, flush=True)
        finally:
            problems = stop(served, "cloudherd serve")
    floor = rows[0][1] - idle
    print(f"\ncloudherd serve's CPU over {args.window:g} s while N dashboard pages follow one fleet of {NODES} "
          f"nodes live (idle server: {idle:.2f} s)")
    print(f"{'pages':>5} {'CPU s':>7} {'above idle':>11} {'vs 1 page':>10}")
    for pages, used, _ in rows:
        above = used - idle
        ratio = above / floor if floor > 0 else float("nan")
        print(f"{pages:>5} {used:7.2f} {above:11.2f} {ratio:9.2f}x")
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores here; other work shares them)")
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
