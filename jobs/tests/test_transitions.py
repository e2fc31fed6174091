"""A job's status is written by jobs/transitions.py only, with its guard.

The first test reads the source tree: any other module that assigns
``.status``, passes ``status=`` to an ``update``, saves ``"status"`` in
``update_fields`` or holds SQL whose ``UPDATE jobs_job … SET`` writes
``status`` fails it, naming the line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from jobs import transitions
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

ROOT = Path(__file__).resolve().parents[2]
APPS = ("callcenter", "accounts", "jobs", "batches", "webhooks")
OWNER = Path("jobs/transitions.py")

# An UPDATE of the jobs table whose SET clause (up to its FROM or WHERE)
# writes status.
SQL_SETS_STATUS = re.compile(
    r"UPDATE\s+jobs_job\b[^;]*?\bSET\b(?:(?!\bFROM\b|\bWHERE\b).)*?\bstatus\s*=",
    re.IGNORECASE | re.DOTALL,
)
# Another model's status (WebhookDelivery.Status.PENDING, ...).
OTHER_MODEL_STATUS = re.compile(r"^(?!Job)\w+\.Status\.\w+$")
# A provider's REST resource, not a model: Twilio's
# client.calls(sid).update(status="canceled") hangs a call up.
PROVIDER_CLIENT = re.compile(r"^self\.client\.")


def _sources() -> list[Path]:
    paths = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if {"tests", "migrations"} & set(rel.parts) or rel == OWNER:
                continue
            paths.append(rel)
    return paths


def _has_status(node: ast.AST) -> bool:
    return isinstance(node, ast.List | ast.Tuple | ast.Set) and any(
        isinstance(e, ast.Constant) and e.value == "status" for e in node.elts
    )


def _status_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) for each write of a job's status in ``source``."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "status":
                found.append((target.lineno, "assigns .status"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if PROVIDER_CLIENT.match(ast.unparse(node.func.value)):
                continue
            for kw in node.keywords:
                if (
                    method in {"update", "update_or_create"}
                    and kw.arg == "status"
                    and not OTHER_MODEL_STATUS.match(ast.unparse(kw.value))
                ):
                    found.append((node.lineno, f"{method}(status=...)"))
                if (
                    method in {"update", "update_or_create"}
                    and kw.arg is None
                    and isinstance(kw.value, ast.Dict)
                    and any(
                        isinstance(k, ast.Constant) and k.value == "status"
                        for k in kw.value.keys
                    )
                ):
                    found.append((node.lineno, f"{method}(**{{'status': ...}})"))
                if kw.arg == "update_fields" and _has_status(kw.value):
                    found.append((node.lineno, f"{method}({kw.arg}=['status', ...])"))
            if method == "bulk_update" and any(_has_status(a) for a in node.args):
                found.append((node.lineno, "bulk_update(..., ['status', ...])"))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # update_fields built in a list first: ["status", ...] in a
            # function that saves with update_fields.
            saves = any(
                isinstance(n, ast.keyword) and n.arg == "update_fields"
                for n in ast.walk(node)
            )
            if saves:
                found += [
                    (getattr(n, "lineno", 0), "'status' in the fields it saves")
                    for n in ast.walk(node)
                    if _has_status(n)
                ]
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL_SETS_STATUS.search(node.value)
        ):
            found.append((node.lineno, "SQL: UPDATE jobs_job SET status"))
    return sorted(set(found))


def test_only_jobs_transitions_writes_a_jobs_status():
    offenders = [
        f"{path}:{line}: {what}"
        for path in _sources()
        for line, what in _status_writes((ROOT / path).read_text())
    ]
    assert offenders == []


def test_the_check_sees_each_kind_of_write():
    """The scan itself: each way of writing a status is caught (and the
    owner's own source is full of them), another model's status is not."""
    owner = _status_writes((ROOT / OWNER).read_text())
    assert {what for _, what in owner} >= {
        "assigns .status",
        "update(status=...)",
        "SQL: UPDATE jobs_job SET status",
    }
    writes = """
def f(job, qs, locked):
    job.status = "failed"
    qs.update(status="pending", updated_at=1)
    qs.update(**{"status": "pending"})
    locked.save(update_fields=["status", "updated_at"])
    Job.objects.bulk_update([job], ["status"])
    SQL = "UPDATE jobs_job AS j SET finished_at = now(), status = 'failed' WHERE"

def g(job):
    fields = ["status", "finished_at"]
    job.save(update_fields=fields)
"""
    lines = sorted({line for line, _ in _status_writes(writes)})
    assert lines == [3, 4, 5, 6, 7, 8, 11]
    reads = """
def h(qs, delivery):
    qs.filter(status="pending").update(finished_at=1)
    qs.update(status=WebhookDelivery.Status.FAILED)
    self.client.calls(sid).update(status="completed")
    models.Index(fields=["batch", "status", "id"])
    SQL = "UPDATE jobs_job SET dialed_at = now() FROM x WHERE status = 'pending'"
    changes = {"status": ["pending", "cancelled"]}
"""
    assert _status_writes(reads) == []


@pytest.mark.django_db
def test_update__moves_only_jobs_in_the_operations_sources():
    waiting = JobFactory(status=JobStatus.SUSPENDED)
    finished = JobFactory(status=JobStatus.COMPLETED)
    moved = transitions.update("restore", id__in=[waiting.pk, finished.pk])
    assert moved == 1
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {
        waiting.pk: JobStatus.PENDING,
        finished.pk: JobStatus.COMPLETED,
    }


@pytest.mark.django_db
def test_update__refuses_sources_outside_the_operation():
    with pytest.raises(transitions.IllegalTransitionError):
        transitions.update(
            "sweep_cancel", from_statuses=[JobStatus.COMPLETED], pk__in=[]
        )


@pytest.mark.django_db
def test_save__refuses_a_job_whose_status_does_not_allow_it():
    job = JobFactory(status=JobStatus.COMPLETED)
    with pytest.raises(transitions.IllegalTransitionError):
        transitions.save(job, "cancel", fields=["updated_at"])
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
