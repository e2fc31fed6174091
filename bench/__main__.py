"""`python -m bench [--quick] [--only SECTION ...] [--kinds KIND ...]`: run the
benchmarks."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime

from bench import db
from bench.context import FULL, QUICK, Context
from bench.report import RESULTS_DIR, Report

SECTIONS = {
    "throughput": "bench.throughput",
    "scale": "bench.scale",
    "latency": "bench.latency",
    "control": "bench.control",
    "sweeps": "bench.sweeps",
    "ingest": "bench.ingest",
    "memory": "bench.memory",
    "export": "bench.export",
    "counts": "bench.counts",
    "windows": "bench.windows",
    "pacing": "bench.pacing",
    "simulation": "bench.simulation",
    "callbacks": "bench.callbacks",
    "inflight": "bench.inflight",
}


def _machine(dbs: db.BenchDatabases) -> dict[str, object]:
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
        **db.server_facts(dbs.url),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one rep")
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=None)
    parser.add_argument("--out", help="JSON path (default bench/results/<ts>.json)")
    parser.add_argument(
        "--kinds",
        nargs="*",
        default=None,
        help="throughput: only these systems (see bench/throughput.py KINDS)",
    )
    args = parser.parse_args(argv)

    dbs = db.resolve()
    db.recreate(dbs.url)
    db.recreate(dbs.peer_url)
    db.setup_django(dbs.url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    report = Report(machine=_machine(dbs))
    ctx = Context(
        dbs=dbs,
        sizes=QUICK if args.quick else FULL,
        report=report,
        quick=args.quick,
        kinds=tuple(args.kinds) if args.kinds else None,
    )
    started = time.monotonic()
    timings: dict[str, float] = {}
    for name in args.only or SECTIONS:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            importlib.import_module(SECTIONS[name]).run(ctx)
        except Exception as exc:
            traceback.print_exc()
            report.missing.append(f"{name}: {type(exc).__name__}: {exc}")
        timings[name] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name} done in {timings[name]} s", file=sys.stderr, flush=True)
    report.machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report.machine["section_seconds"] = timings
    report.machine["total_seconds"] = round(time.monotonic() - started, 1)
    report.machine["quick"] = args.quick
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    path = report.save(
        __import__("pathlib").Path(args.out)
        if args.out
        else RESULTS_DIR / f"{stamp}.json"
    )
    print(report.markdown())
    print(f"\nmachine: {report.machine}\nresults: {path}")
    if not (args.quick or args.only or args.kinds or args.out):
        # A full run is the one docs/performance.md shows.
        from bench import docs

        docs.write(path)
        print(f"figures written to {docs.DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
