"""`python -m bench.loadgen PLAN OUT`: send prepared HTTP requests to a
loopback server, a fixed number of lanes at once, and write each request's
timing and status.

The load generator of the callbacks section, in a process of its own so that
its CPU is not the bench's. PLAN is a pickle of ``{"host", "port",
"lanes"}``, where each lane is a list of ``(tag, raw request bytes)`` sent
one after another, each on a new connection (gunicorn's sync workers close
the connection after each response); all lanes run at once on one asyncio
loop. The requests are built, and signed, before the first one is sent, so
the generator's own work per request is a connect, a write and a read.

OUT gets JSON: ``{"samples": [[lane, tag, start, end, status], ...]}`` with
``time.perf_counter()`` times; status 0 is a connection error. The run is
bounded: every request has a timeout, and the whole run a deadline.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from pathlib import Path

REQUEST_TIMEOUT = 30.0
RUN_DEADLINE = 900.0


async def _one(host: str, port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await reader.read()  # the server closes after its response
    finally:
        writer.close()
    # "HTTP/1.1 200 OK"
    return int(data[9:12]) if data[:5] == b"HTTP/" and len(data) >= 12 else 0


async def _lane(
    n: int, host: str, port: int, requests: list[tuple[str, bytes]], out: list
) -> None:
    for tag, raw in requests:
        start = time.perf_counter()
        try:
            status = await asyncio.wait_for(_one(host, port, raw), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, ValueError):
            status = 0
        out.append([n, tag, start, time.perf_counter(), status])


async def run(plan: dict) -> list:
    out: list = []
    lanes = [
        _lane(n, plan["host"], plan["port"], requests, out)
        for n, requests in enumerate(plan["lanes"])
    ]
    await asyncio.wait_for(asyncio.gather(*lanes), RUN_DEADLINE)
    return out


def main(argv: list[str]) -> int:
    plan = pickle.loads(Path(argv[0]).read_bytes())
    samples = asyncio.run(run(plan))
    Path(argv[1]).write_text(json.dumps({"samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
