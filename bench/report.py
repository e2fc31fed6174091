"""Results: one row per figure, printed as a markdown table and saved as JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """The range of the repetitions behind a median: "min-max (n=5)"."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    return f"{fmt.format(lo)}-{fmt.format(hi)} (n={len(values)})"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; p in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Row:
    section: str
    figure: str
    value: float | None
    unit: str
    target: str = ""
    passed: bool | None = None
    ratio: float | None = None
    note: str = ""
    # The range of the repetitions behind a median value or ratio.
    spread: str = ""
    # The same figure, and its target, in the last committed run before the
    # baselines were reworked (bench/before.py), so that a moved target shows
    # where it was.
    before: str = ""
    # A stable name for the figure, independent of its label.
    key: str = ""


@dataclass
class Report:
    machine: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            "| section | figure | value | spread | target | pass | ratio"
            " | before (2026-11-26 run) | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            value = "" if r.value is None else f"{_fmt(r.value)} {r.unit}".strip()
            passed = {True: "PASS", False: "FAIL", None: ""}[r.passed]
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            lines.append(
                f"| {r.section} | {r.figure} | {value} | {r.spread} | {r.target}"
                f" | {passed} | {ratio} | {r.before} | {r.note} |"
            )
        for m in self.missing:
            lines.append(f"| missing | {m} | | | | | | | |")
        return "\n".join(lines)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "machine": self.machine,
            "rows": [asdict(r) for r in self.rows],
            "missing": self.missing,
            "raw": self.raw,
        }
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "nan"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"
