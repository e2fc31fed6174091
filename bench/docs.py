"""`python -m bench.docs [RESULTS.json]`: write a run's figures into
docs/performance.md.

The tables between the two `bench:figures` markers of docs/performance.md are
generated from one results file (by default the newest in bench/results/),
never typed by hand, so the page always shows one run, its machine and its
load average. A full `make bench` run calls this itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
START = "<!-- bench:figures:start -->"
END = "<!-- bench:figures:end -->"


def _num(v: float | None, digits: int = 2) -> str:
    if v is None or v != v:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}g}" if digits > 2 else f"{v:.2f}"


def _mark(passed: bool | None) -> str:
    return {True: " pass", False: " **MISSED**", None: ""}[passed]


def _split(key: str) -> tuple[str, str, int]:
    prefix, _, rest = key.partition(":")
    name, _, n = rest.rpartition(":")
    return prefix, name, int(n)


def _machine(run: dict[str, Any], path: Path) -> str:
    m = run["machine"]
    settings = m.get("settings", {})
    sb = settings.get("shared_buffers")
    shared = f"{int(sb) * 8 // 1024} MB" if str(sb).isdigit() else sb
    took = m.get("total_seconds", 0)
    sections = ", ".join(
        f"{k} {v:.0f} s" for k, v in m.get("section_seconds", {}).items()
    )
    quick = " **A quick run: its figures mean nothing.**" if m.get("quick") else ""
    return (
        f"**Run:** `bench/results/{path.name}`: {m.get('cores')} cores,"
        f" PostgreSQL {m.get('postgresql', '?').split(' ')[0]}"
        f" (synchronous_commit {settings.get('synchronous_commit')},"
        f" shared_buffers {shared}), Python {m.get('python')}; load average"
        f" {' / '.join(str(x) for x in m.get('loadavg_at_start', []))} (1 / 5 / 15"
        f" min) at the start and"
        f" {' / '.join(str(x) for x in m.get('loadavg_at_end', []))} at the end;"
        f" {took // 60:.0f} min {took % 60:.0f} s ({sections}).{quick}"
    )


def render(run: dict[str, Any], path: Path) -> str:
    rows = run["rows"]
    keyed = {r["key"]: r for r in rows if r.get("key")}
    rates = [r for r in rows if r.get("key", "").startswith("rate:")]
    ratios = [r for r in rows if r.get("key", "").startswith("ratio:")]
    counts = sorted({_split(r["key"])[2] for r in rates + ratios})
    out = [START, "", _machine(run, path), ""]

    if rates:
        out += [
            "### Claim throughput, jobs/s",
            "",
            "Median of the repetitions, their range in brackets; the last"
            " column is the same figure in the run before the rework.",
            "",
            "| system | " + " | ".join(f"{n} claimers" for n in counts) + " | before |",
            "|---|" + "---|" * (len(counts) + 1),
        ]
        labels: dict[str, str] = {}
        for r in rates:
            labels.setdefault(_split(r["key"])[1], r["figure"].rsplit(",", 1)[0])
        for kind, label in labels.items():
            cells, before = [], []
            for n in counts:
                r = keyed.get(f"rate:{kind}:{n}")
                cells.append(
                    f"{_num(r['value'])} ({r['spread'].split(' (')[0]})"
                    if r and r["value"] is not None
                    else "-"
                )
                if r and r.get("before"):
                    before.append(r["before"].replace(" jobs/s", ""))
            if before and set(before) == {"not measured"}:
                before = ["not measured"]
            out.append(
                f"| {label} | " + " | ".join(cells) + f" | {' / '.join(before)} |"
            )
        out.append("")

    if ratios:
        out += [
            "### Ratios and targets",
            "",
            "Median of the per-repetition ratios, their range in brackets; a"
            " target passes only if the median does. *Before*: the same ratio in"
            " the run before the rework, at each claimer count, with the target"
            " it had then.",
            "",
            "| ratio | " + " | ".join(str(n) for n in counts) + " | target | before |",
            "|---|" + "---|" * (len(counts) + 2),
        ]
        seen: dict[str, dict[str, Any]] = {}
        for r in ratios:
            seen.setdefault(_split(r["key"])[1], r)
        for pair, first in seen.items():
            cells, before, target = [], [], first["target"]
            for n in counts:
                r = keyed.get(f"ratio:{pair}:{n}")
                if not r:
                    cells.append("-")
                    continue
                cells.append(
                    f"{r['ratio']:.2f} ({r['spread'].split(' (')[0]})"
                    f"{_mark(r['passed'])}"
                )
                if r.get("before"):
                    before.append(r["before"])
            tail = ""
            if before and not before[0].startswith("not measured"):
                # "0.81x against raw CTE (target >= 0.8x)": the values per
                # claimer count, then the rest once.
                tail = " " + before[0].split(" ", 1)[1] if " " in before[0] else ""
                before = [b.split(" ", 1)[0].rstrip("x") for b in before]
            elif before:
                before = ["not measured"]
            label = first["figure"].rsplit(",", 1)[0]
            note = f" ({first['note'].split(';')[0]})" if first.get("note") else ""
            out.append(
                f"| {label}{note} | " + " | ".join(cells) + f" | {target or '-'}"
                f" | {' / '.join(before)}{tail} |"
            )
        waits = [r["note"] for r in ratios if "server waits" in r.get("note", "")]
        if waits:
            out += [
                "",
                "Where the server's backends waited: "
                + waits[0].split("; ", 1)[1]
                + ".",
            ]
        out.append("")

    others = [r for r in rows if r not in rates and r not in ratios]
    if others:
        out += [
            "### The other figures",
            "",
            "| section | figure | value | target | result | before | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in others:
            value = _num(r["value"]) + (f" {r['unit']}" if r["unit"] else "")
            if r.get("ratio") is not None:
                value += f": {r['ratio']:.2f}x"
            if r.get("spread"):
                value += f" ({r['spread']})"
            out.append(
                f"| {r['section']} | {r['figure']} | {value} | {r['target']} |"
                f"{_mark(r['passed'])} | {r.get('before', '')} | {r['note']} |"
            )
        out.append("")
    if run.get("missing"):
        out += ["Missing from this run:", ""]
        out += [f"- {m}" for m in run["missing"]]
        out.append("")
    out.append(END)
    return "\n".join(out)


def write(path: Path, doc: Path = DOC) -> None:
    run = json.loads(path.read_text())
    text = doc.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + render(run, path) + tail)


def newest() -> Path:
    runs = sorted(RESULTS_DIR.glob("*.json"))
    if not runs:
        raise SystemExit("no results in bench/results/")
    return runs[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.docs", description=__doc__)
    parser.add_argument("results", nargs="?", help="a results JSON (default: newest)")
    args = parser.parse_args(argv)
    path = Path(args.results) if args.results else newest()
    write(path)
    print(f"{DOC}: figures from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
