"""Each figure as the last committed run before the baselines were reworked.

That rework changed baselines, peers' settings, trial lengths and some
targets. So that no target moves silently, every row of a new run carries the same
figure from bench/results/20261126T013743Z.json (medians of 3 trials of
1.5 s; raw CTE and peers with synchronous commits, django-q2 under this
project's connection settings), with the target it had then, or says that it
was not measured.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from bench.report import RESULTS_DIR, percentile

RUN = "20261126T013743Z.json"

# The labels that run used.
_OLD = {
    "ours": "ours (worker lifecycle, 1 job per claim)",
    "ours-batch": "ours (worker lifecycle, claims of 10)",
    "ours-claim": "ours (claim path: claim_jobs + finish)",
    "raw": "raw CTE",
    "django-q2": "django-q2 ORM broker",
    "procrastinate": "procrastinate",
}


@functools.cache
def _run() -> dict[str, Any]:
    try:
        return json.loads((RESULTS_DIR / RUN).read_text())
    except OSError:
        return {}


def _row(figure: str) -> dict[str, Any] | None:
    return next((r for r in _run().get("rows", []) if r["figure"] == figure), None)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def _with_target(text: str, target: str) -> str:
    return f"{text} (target {target})" if target else f"{text} (no target)"


def _rate(kind: str, n: str) -> str:
    if kind not in _OLD:
        return "not measured"
    row = _row(f"{_OLD[kind]}, {n} claimers")
    return _fmt(row["value"], "jobs/s") if row else ""


# A ratio whose baseline changed in the rework: the old row it replaces.
_RATIO_WAS = {
    ("ours-claim", "raw-same"): ("ours-claim", "raw"),
    ("ours-batch", "django-q2-bulk"): ("ours-batch", "django-q2"),
}


def _ratio(mine: str, peer: str, n: str) -> str:
    old_mine, old_peer = _RATIO_WAS.get((mine, peer), (mine, peer))
    if old_mine not in _OLD or old_peer not in _OLD:
        return "not measured"
    row = _row(f"{_OLD[old_mine]} / {_OLD[old_peer]}, {n} claimers")
    if not row:
        return ""
    text = f"{row['ratio']:.2f}x"
    if (old_mine, old_peer) != (mine, peer):
        text += f" against {_OLD[old_peer]}"
    return _with_target(text, row["target"])


def _control(path: str) -> Any:
    node: Any = _run().get("raw", {}).get("control", {})
    for part in path.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _patch(action: str, niced: bool) -> str:
    if niced:
        row = _row(f"PATCH {action} p50 / p99 (100 requests)")
        return _with_target(_fmt(row["value"], "ms"), row["target"]) if row else ""
    lat = _control(f"patch_ms_claimers_not_niced.{action}")
    return _with_target(_fmt(percentile(lat, 99), "ms"), "") if lat else ""


def _stall(op: str, whole_call: bool) -> str:
    if whole_call:
        ms = _control(f"call_ms_max_during.{op}")
        return _with_target(_fmt(ms, "ms"), "") if ms else ""
    row = _row(f"longest claim during {op}")
    return _with_target(_fmt(row["value"], "ms"), row["target"]) if row else ""


def _same(figure: str, unit: str) -> str:
    row = _row(figure)
    if not row:
        return ""
    text = _fmt(row["value"], unit)
    if row.get("ratio") is not None:
        ratio = f"{row['ratio']:.2f}x"
        text = ratio if "scale" in row["section"] else f"{ratio}, {text}"
    return _with_target(text, row["target"]) if row["target"] else text


_BY_PREFIX: dict[str, Callable[..., str]] = {
    "rate": _rate,
    "patch": lambda action, run: (
        _patch(action, run == "niced") if run != "own-session" else "not measured"
    ),
    "stall": lambda op, what: _stall(op, what == "call"),
    "same": lambda figure, unit="": _same(figure, unit),
}


def figure(key: str) -> str:
    """The figure named by `key` in the run before the rework, or ""."""
    prefix, _, rest = key.partition(":")
    if prefix == "ratio":
        pair, _, n = rest.rpartition(":")
        mine, _, peer = pair.partition("/")
        return _ratio(mine, peer, n)
    fn = _BY_PREFIX.get(prefix)
    return fn(*rest.split(":")) if fn else ""
