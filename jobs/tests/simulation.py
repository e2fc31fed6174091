"""The call-safety simulation: real ``run_call_worker`` processes calling
random contacts while the rules change under them, then a check of every
call made against the rules in force when it was dialled.

Used at a small size by ``jobs/tests/test_simulation.py`` and at full size
by ``bench/simulation.py``. Everything random comes from one seed, which a
failure prints.

The world: contacts in 11 time zones (US numbers of single- and multi-zone
area codes, some in states with their own calling hours, and numbers in
Europe, Asia, Oceania and Latin America), several jobs per number across
accounts and batches; batches with random calling windows, some with an AI
voice (half their jobs with consent), some with concurrency caps; accounts
with a per-number 24 h cap of 2 or 3, one with holidays (today's date in
some zones), one with few credits. While the workers run, a controller
adds numbers with open jobs to an account's or the system-wide do-not-call
list, pauses and resumes batches, cancels jobs, moves calling windows (so
that they open and close for contacts during the run) and kill -9s workers,
starting others in their place.

The check reads only what was recorded: the ``CallAttempt`` rows (the dial
gate stamps ``started_at`` with the database's clock, the same clock as the
controller's record of when each change committed), the dialer's own log of
what it was asked to dial and when each call ended (``SIMULATED_DIAL_LOG``),
the accounts' credit balances. It checks too that no dial began while its
batch was paused, and that every dial has its attempt row. It does not
call the rules' code: zones come from ``phonenumbers``, state hours from
the data table, windows and holidays are evaluated here.

The clock: PostgreSQL's ``now()``, which the gate decides on, is the real
one (no fake moves it, docs/calling-windows.md); windows are set around the
contacts' local time now, so they open and close during the run as the
controller moves them and as minutes pass.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from django.conf import settings
from django.db import connection
from phonenumbers import timezone as phone_timezone

SLACK = timedelta(milliseconds=50)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DATA = Path(__file__).resolve().parent.parent / "data"

# Area codes and countries: (prefix, digits to append). US ones include
# multi-zone area codes (605: Mountain and North Dakota Central; 208:
# Boise and Pacific) and states with their own hours (FL 305, OK 405, TX
# 915, PA 215).
NUMBER_PREFIXES = (
    ("+1212", 7),
    ("+1310", 7),
    ("+1305", 7),
    ("+1405", 7),
    ("+1915", 7),
    ("+1215", 7),
    ("+1605", 7),
    ("+1208", 7),
    ("+1520", 7),
    ("+4412123", 5),
    ("+4930123", 3),
    ("+8131234", 4),
    ("+6121234", 4),
    ("+9174104", 5),
    ("+5521234", 5),
    ("+643234", 4),
)


@dataclass
class Config:
    seed: int
    jobs: int
    numbers: int
    workers: int
    seconds: float
    db_url: str
    workdir: Path
    concurrency: int = 4
    call_seconds: str = "0.05-0.4"
    lease_seconds: int = 5
    step_seconds: tuple[float, float] = (0.1, 0.4)
    kills: int = 2


@dataclass
class Change:
    """One change the controller made: the database's clock just before it
    was sent and just after it committed."""

    kind: str
    target: Any
    before: datetime
    after: datetime
    value: Any = None


@dataclass
class Outcome:
    seed: int
    attempts: int
    dials: int
    changes: dict[str, int]
    violations: list[str] = field(default_factory=list)
    zones: int = 0
    seconds: float = 0.0
    dialled_while_paused: int = 0

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.attempts} call attempts, {self.dials} dials"
            f" logged, {self.zones} zones, changes {self.changes},"
            f" {len(self.violations)} violations in {self.seconds:.1f} s"
            f" ({self.dialled_while_paused} dialled while paused)"
        )


def db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        value: datetime = cursor.fetchone()[0]
    return value


def _numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` valid numbers, taken from each prefix in turn (a prefix
    whose numbers run out is left out)."""
    found: list[str] = []
    seen: set[str] = set()
    live = list(NUMBER_PREFIXES)
    turn = 0
    while len(found) < count and live:
        prefix, digits = live[turn % len(live)]
        first = "2" if prefix.startswith("+1") else ""
        for _ in range(200):
            tail = first + "".join(
                rng.choice("0123456789") for _ in range(digits - len(first))
            )
            e164 = prefix + tail
            if e164 not in seen and phonenumbers.is_valid_number(
                phonenumbers.parse(e164)
            ):
                seen.add(e164)
                found.append(e164)
                turn += 1
                break
        else:
            live.remove((prefix, digits))
    return found


def zones_of(e164: str) -> tuple[str, ...]:
    parsed = phonenumbers.parse(e164)
    return tuple(
        z for z in phone_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown"
    )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def random_window(rng: random.Random, now: datetime, zone: str) -> dict[str, Any]:
    """All day; or a window whose edges fall near ``zone``'s local time
    now (so it opens or closes during the run); or one elsewhere in the
    day."""
    local = now.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    draw = rng.random()
    if draw < 0.4:
        return {"start": "00:00", "end": "24:00", "days": list(DAYS)}
    if draw < 0.8:
        start = max(0, minute + rng.randint(-90, 3))
        end = min(24 * 60, max(start + 1, minute + rng.randint(1, 4)))
        if rng.random() < 0.5:
            start, end = max(0, minute - rng.randint(120, 600)), end
    else:
        start = rng.randint(0, 22 * 60)
        end = min(24 * 60, start + rng.randint(30, 14 * 60))
    days = [d for d in DAYS if rng.random() < 0.85] or [DAYS[local.weekday()]]
    return {"start": _hhmm(start), "end": _hhmm(end), "days": days}


# --- the check --------------------------------------------------------------


def _state_rules() -> tuple[dict[str, str], dict[str, list[tuple[set[int], int, int]]]]:
    with (DATA / "us_area_codes.csv").open() as f:
        states = {row["area_code"]: row["state"] for row in csv.DictReader(f)}
    rules: dict[str, list[tuple[set[int], int, int]]] = defaultdict(list)
    with (DATA / "us_state_calling_hours.csv").open() as f:
        for row in csv.DictReader(f):
            first, _, last = row["days"].partition("-")
            a = DAYS.index(first)
            b = DAYS.index(last or first)
            days = set(range(a, b + 1))
            rules[row["state"]].append(
                (days, _minutes(row["start"]), _minutes(row["end"]))
            )
    return states, rules


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def window_allows(window: dict[str, Any], local: datetime) -> bool:
    days = window.get("days") or list(DAYS)
    if DAYS[local.weekday()] not in days:
        return False
    minute = local.hour * 60 + local.minute + local.second / 60
    return _minutes(window["start"]) <= minute < _minutes(window["end"])


class Checker:
    """Every call against the rules in force when it was dialled."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.states, self.state_rules = _state_rules()
        self.violations: list[str] = []
        self.dialled_while_paused = 0

    def bad(self, message: str) -> None:
        self.violations.append(message)

    def _local_ok(self, number: str, zones: tuple[str, ...], at: datetime) -> bool:
        state = self.states.get(number[2:5]) if number.startswith("+1") else None
        for name in zones:
            local = at.astimezone(ZoneInfo(name))
            if state in self.state_rules:
                minute = local.hour * 60 + local.minute + local.second / 60
                if not any(
                    local.weekday() in days and start <= minute < end
                    for days, start, end in self.state_rules[state]
                ):
                    return False
        return True

    def _windows_at(self, batch: int, at: datetime) -> list[dict[str, Any]]:
        """Every window the gate may have seen at ``at``: the one committed
        last before it, and one whose commit was under way then."""
        history = self.world.windows[batch]
        candidates = []
        for i, change in enumerate(history):
            nxt = history[i + 1] if i + 1 < len(history) else None
            # The gate's snapshot follows its clock reading by the time of
            # one statement's start: allow it SLACK.
            if change.before <= at + SLACK and (nxt is None or nxt.after > at):
                candidates.append(change.value)
        return candidates

    def check(self, attempts: list[dict[str, Any]], dials: list[dict[str, Any]]):
        world = self.world
        dnc: dict[str, list[Change]] = defaultdict(list)
        cancels: dict[int, list[Change]] = defaultdict(list)
        for change in world.changes:
            if change.kind == "dnc":
                dnc[change.target].append(change)
            elif change.kind == "cancel":
                cancels[change.target].append(change)
        for a in attempts:
            at: datetime = a["started_at"]
            job = world.jobs[a["job_id"]]
            number = a["phone_number"]
            label = f"attempt {a['token'][:8]} (job {a['job_id']}, {number}, {at})"
            zones = (job["timezone"],) if job["timezone"] else zones_of(number)
            if not zones:
                self.bad(f"{label}: dialled with no known zone")
                continue
            # Windows and holidays, in every zone of the number.
            windows = self._windows_at(a["batch_pk"], at)
            if not any(
                all(window_allows(w, at.astimezone(ZoneInfo(z))) for z in zones)
                for w in windows
            ):
                self.bad(f"{label}: outside its window {windows} in {zones}")
            if not self._local_ok(number, zones, at):
                self.bad(f"{label}: outside its state's calling hours")
            holidays = world.holidays.get(a["account_pk"], set())
            for z in zones:
                if at.astimezone(ZoneInfo(z)).date() in holidays:
                    self.bad(f"{label}: on a holiday in {z}")
            # Consent.
            if world.voice[a["batch_pk"]] != "human" and job["consent_at"] is None:
                self.bad(f"{label}: {world.voice[a['batch_pk']]} voice, no consent")
            # Do-not-call: listed before the gate's transaction began.
            for change in dnc.get(number, ()):
                if change.value in (None, a["account_pk"]) and change.after < at:
                    self.bad(f"{label}: on a DNC list since {change.after}")
            for change in cancels.get(a["job_id"], ()):
                if change.after < at:
                    self.bad(f"{label}: job cancelled at {change.after}")
            # A paused batch: the dial mark takes only jobs of an active
            # batch, so no dial begins after a pause committed.
            for start, end in world.paused_spans(a["batch_pk"]):
                if start < at < end:
                    self.dialled_while_paused += 1
                    self.bad(f"{label}: batch paused from {start} to {end}")
        self._frequency(attempts)
        self._concurrency(attempts)
        self._one_at_a_time_dials(dials)
        self._dials_match(attempts, dials)
        for account, balance in world.balances().items():
            if balance < 0:
                self.bad(f"account {account}: credits {balance} below zero")
        return self.violations

    def _frequency(self, attempts: list[dict[str, Any]]) -> None:
        calls: dict[tuple[int, str], list[datetime]] = defaultdict(list)
        for a in attempts:
            calls[(a["account_pk"], a["phone_number"])].append(a["started_at"])
        for (account, number), times in calls.items():
            cap = self.world.frequency_cap[account]
            times.sort()
            for i in range(len(times) - cap):
                if times[i + cap] - times[i] < timedelta(hours=24):
                    self.bad(
                        f"{number} called {cap + 1} times within 24 h by account"
                        f" {account}: {times[i : i + cap + 1]}"
                    )
                    break

    def _overlaps(
        self, spans: list[tuple[datetime | float, datetime | float, str]], cap: int
    ) -> str | None:
        """The first moment more than ``cap`` spans are open at once."""
        edges = []
        for start, end, what in spans:
            edges.append((start, 1, what))
            edges.append((end, 0, what))
        edges.sort(key=lambda e: (e[0], e[1]))
        open_: set[str] = set()
        for moment, kind, what in edges:
            if kind:
                open_.add(what)
                if len(open_) > cap:
                    return f"at {moment}: {sorted(open_)}"
            else:
                open_.discard(what)
        return None

    def _concurrency(self, attempts: list[dict[str, Any]]) -> None:
        """From the attempts: a number in two calls at once; a batch's or an
        account's calls in progress over its cap."""
        far = max((a["started_at"] for a in attempts), default=None)
        if far is None:
            return
        far += timedelta(days=1)
        by_number: dict[str, list[Any]] = defaultdict(list)
        by_batch: dict[int, list[Any]] = defaultdict(list)
        by_account: dict[int, list[Any]] = defaultdict(list)
        for a in attempts:
            span = (a["started_at"], a["ended_at"] or far, a["token"])
            by_number[a["phone_number"]].append(span)
            by_batch[a["batch_pk"]].append(span)
            by_account[a["account_pk"]].append(span)
        for number, spans in by_number.items():
            found = self._overlaps(spans, 1)
            if found:
                self.bad(f"{number} in two calls at once (attempts) {found}")
        for pk, spans in by_batch.items():
            cap = self.world.batch_cap.get(pk)
            if cap is not None and (found := self._overlaps(spans, cap)):
                self.bad(f"batch {pk} over its cap of {cap}: {found}")
        for pk, spans in by_account.items():
            cap = self.world.account_cap.get(pk)
            if cap is not None and (found := self._overlaps(spans, cap)):
                self.bad(f"account {pk} over its cap of {cap}: {found}")

    def _one_at_a_time_dials(self, dials: list[dict[str, Any]]) -> None:
        """From the dialer's own log: a number in two calls at once. A call
        of a killed worker ended when its process died."""
        death = self.world.deaths
        started: dict[str, dict[str, Any]] = {}
        ended: dict[str, float] = {}
        for line in dials:
            if line["event"] == "dial":
                started[line["call"]] = line
            else:
                ended[line["call"]] = line["at"]
        by_number: dict[str, list[Any]] = defaultdict(list)
        for call, line in started.items():
            end = ended.get(call, death.get(line["pid"], float("inf")))
            by_number[line["number"]].append((line["at"], end, call))
        for number, spans in by_number.items():
            found = self._overlaps(spans, 1)
            if found:
                self.bad(f"{number} in two calls at once (dialer's log) {found}")

    def _dials_match(
        self, attempts: list[dict[str, Any]], dials: list[dict[str, Any]]
    ) -> None:
        """Every call the dialer was asked for has its attempt row (so the
        checks above saw it)."""
        attempted: dict[int, int] = defaultdict(int)
        for a in attempts:
            attempted[a["job_id"]] += 1
        asked: dict[int, int] = defaultdict(int)
        for line in dials:
            if line["event"] == "dial":
                asked[line["job"]] += 1
        for job, count in asked.items():
            if count > attempted.get(job, 0):
                self.bad(
                    f"job {job}: the dialer was asked {count} times,"
                    f" {attempted.get(job, 0)} attempts recorded"
                )


# --- the world --------------------------------------------------------------


class World:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.jobs: dict[int, dict[str, Any]] = {}
        self.windows: dict[int, list[Change]] = defaultdict(list)
        self.voice: dict[int, str] = {}
        self.batch_cap: dict[int, int] = {}
        self.account_cap: dict[int, int] = {}
        self.frequency_cap: dict[int, int] = {}
        self.holidays: dict[int, set[date]] = {}
        self.changes: list[Change] = []
        self.deaths: dict[int, float] = {}
        self.accounts: list[int] = []
        self.batches: list[int] = []
        self.numbers: list[str] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.dial_log = cfg.workdir / "dials.jsonl"
        self.spawned = 0

    def paused_spans(self, batch: int) -> list[tuple[datetime, datetime]]:
        spans = []
        start = None
        for change in self.changes:
            if change.target != batch:
                continue
            if change.kind == "pause" and start is None:
                start = change.after
            elif change.kind == "resume" and start is not None:
                spans.append((start, change.before))
                start = None
        if start is not None:
            spans.append((start, datetime.max.replace(tzinfo=start.tzinfo)))
        return spans

    def balances(self) -> dict[int, int]:
        from accounts.models import Account

        return dict(
            Account.objects.filter(pk__in=self.accounts).values_list("pk", "credits")
        )

    # -- setup

    def build(self) -> None:
        from accounts.tests.factories import AccountFactory
        from batches.tests.factories import BatchFactory
        from jobs.models import Job

        rng = self.rng
        now = db_now()
        self.numbers = _numbers(rng, self.cfg.numbers)
        tokyo_today = now.astimezone(ZoneInfo("Asia/Tokyo")).date()
        specs = [
            # (frequency cap, account concurrency cap, credits, holidays)
            (3, None, 10**9, []),
            (2, 6, 10**9, [tokyo_today.isoformat()]),
            (3, None, 40, []),
        ]
        for cap, concurrent, credits, holidays in specs:
            account: Any = AccountFactory(
                credits=credits,
                max_calls_per_number_per_24h=cap,
                max_concurrent_calls=concurrent,
                holidays=holidays,
            )
            self.accounts.append(account.pk)
            self.frequency_cap[account.pk] = cap
            if concurrent:
                self.account_cap[account.pk] = concurrent
            self.holidays[account.pk] = {date.fromisoformat(d) for d in holidays}
        zones = sorted({z for n in self.numbers for z in zones_of(n)})
        for i in range(8):
            owner = self.accounts[i % len(self.accounts)]
            window = random_window(rng, now, rng.choice(zones))
            voice = "ai" if i % 4 == 3 else ("prerecorded" if i == 6 else "human")
            batch_cap: int | None = rng.choice([None, 2, 4]) if i % 2 else None
            batch: Any = BatchFactory(
                account_id=owner,
                calling_window=window,
                voice=voice,
                max_concurrent_calls=batch_cap,
                priority=rng.randint(0, 3),
                retry_policy={
                    "busy": {"retry": True, "delay_seconds": 1},
                    "no_answer": {"retry": True, "delay_seconds": 2},
                },
            )
            self.batches.append(batch.pk)
            self.voice[batch.pk] = voice
            if batch_cap:
                self.batch_cap[batch.pk] = batch_cap
            self.windows[batch.pk].append(
                Change("window", batch.pk, now - timedelta(days=1), now, window)
            )
        # One job per number and batch (a batch holds a number once).
        pairs = rng.sample(range(len(self.numbers) * len(self.batches)), self.cfg.jobs)
        rows = []
        for pair in pairs:
            index, number = divmod(pair, len(self.numbers))
            consent = now - timedelta(days=3) if rng.random() < 0.5 else None
            rows.append(
                Job(
                    account_id=self.accounts[index % len(self.accounts)],
                    batch_id=self.batches[index],
                    phone_number=self.numbers[number],
                    variables={},
                    max_attempts=rng.randint(1, 4),
                    consent_at=consent,
                    priority=rng.randint(0, 5),
                )
            )
        for job in Job.objects.bulk_create(rows, batch_size=5000):
            self.jobs[job.pk] = {
                "timezone": job.timezone,
                "consent_at": job.consent_at,
                "number": job.phone_number,
            }
        self.zones = zones

    # -- workers

    def start_worker(self) -> None:
        self.spawned += 1
        worker_id = f"sim-{self.spawned}"
        log = (self.cfg.workdir / f"{worker_id}.log").open("w")
        self.procs[worker_id] = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_call_worker",
                f"--concurrency={self.cfg.concurrency}",
                f"--worker-id={worker_id}",
            ],
            cwd=settings.BASE_DIR,
            env={
                **os.environ,
                "DATABASE_URL": self.cfg.db_url,
                "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
                "SIMULATED_SEED": str(self.cfg.seed + self.spawned),
                "SIMULATED_OUTCOMES": (
                    "answered=5,busy=2,no_answer=2,voicemail=1,failed=1"
                ),
                "SIMULATED_CALL_SECONDS": self.cfg.call_seconds,
                "SIMULATED_DIAL_LOG": str(self.dial_log),
                "JOB_LEASE_SECONDS": str(self.cfg.lease_seconds),
                "WORKER_POLL_SECONDS": "0.2",
                "PYTHONUNBUFFERED": "1",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_one(self) -> None:
        alive = [w for w, p in self.procs.items() if p.poll() is None]
        if not alive:
            return
        victim = self.rng.choice(alive)
        proc = self.procs[victim]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.deaths[proc.pid] = time.time()
        self.changes.append(Change("kill", victim, db_now(), db_now()))
        self.start_worker()

    def stop_workers(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.deaths[proc.pid] = time.time()

    # -- the controller's changes

    def _change(self, kind: str, target: Any, value: Any, apply: Any) -> None:
        before = db_now()
        apply()
        self.changes.append(Change(kind, target, before, db_now(), value))

    def step(self) -> None:
        from accounts.models import Account
        from batches.models import Batch
        from batches.services import batch_pause, batch_resume, batch_update
        from callcenter.actor import Actor
        from jobs.dnc import dnc_add
        from jobs.models import Job, JobStatus
        from jobs.services import job_cancel

        rng = self.rng
        actor = Actor.system("simulation")
        action = rng.choices(
            ["dnc", "pause", "resume", "cancel", "window"], [3, 1, 2, 2, 3]
        )[0]
        if action == "dnc":
            open_job = (
                Job.objects.filter(
                    status__in=[JobStatus.PENDING, JobStatus.SCHEDULED],
                    account_id__in=self.accounts,
                )
                .order_by("?")
                .values_list("phone_number", "account_id")
                .first()
            )
            if open_job is None:
                return
            number, account_pk = open_job
            account = Account.objects.get(pk=account_pk) if rng.random() < 0.7 else None
            self._change(
                "dnc",
                number,
                account.pk if account else None,
                lambda: dnc_add(account=account, numbers=[number], actor=actor),
            )
        elif action in ("pause", "resume"):
            batch = Batch.objects.get(pk=rng.choice(self.batches))
            service = batch_pause if action == "pause" else batch_resume
            self._change(
                action, batch.pk, None, lambda: service(batch=batch, actor=actor)
            )
        elif action == "cancel":
            job = (
                Job.objects.filter(
                    batch_id__in=self.batches,
                    status__in=[JobStatus.PENDING, JobStatus.SCHEDULED],
                )
                .order_by("?")
                .first()
            )
            if job is not None:
                self._change(
                    "cancel",
                    job.pk,
                    None,
                    lambda: job_cancel(job=job, actor=actor),
                )
        else:
            batch = Batch.objects.get(pk=rng.choice(self.batches))
            window = random_window(rng, db_now(), rng.choice(self.zones))
            before = db_now()
            batch_update(batch=batch, actor=actor, calling_window=window)
            change = Change("window", batch.pk, before, db_now(), window)
            self.windows[batch.pk].append(change)
            self.changes.append(change)

    # -- the run

    def run(self) -> Outcome:
        from jobs.models import CallAttempt

        started = time.monotonic()
        self.build()
        for _ in range(self.cfg.workers):
            self.start_worker()
        rng = self.rng
        kill_at = sorted(
            rng.uniform(0.2, 0.8) * self.cfg.seconds for _ in range(self.cfg.kills)
        )
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < self.cfg.seconds:
                if kill_at and elapsed >= kill_at[0]:
                    kill_at.pop(0)
                    self.kill_one()
                self.step()
                time.sleep(rng.uniform(*self.cfg.step_seconds))
        finally:
            self.stop_workers()
        attempts: list[dict[str, Any]] = [
            dict(row)
            for row in CallAttempt.objects.filter(account_pk__in=self.accounts).values(
                "token",
                "job_id",
                "account_pk",
                "batch_pk",
                "phone_number",
                "started_at",
                "ended_at",
                "job__finished_at",
            )
        ]
        for row in attempts:
            # A call lost with its worker is failed by recovery, which ends
            # the job but leaves the attempt's ended_at empty: it ended no
            # later than its job.
            row["ended_at"] = row["ended_at"] or row.pop("job__finished_at")
            row.pop("job__finished_at", None)
        dials = []
        if self.dial_log.exists():
            for line in self.dial_log.read_text().splitlines():
                dials.append(json.loads(line))
        counts: dict[str, int] = defaultdict(int)
        for change in self.changes:
            counts[change.kind] += 1
        outcome = Outcome(
            seed=self.cfg.seed,
            attempts=len(attempts),
            dials=sum(1 for d in dials if d["event"] == "dial"),
            changes=dict(counts),
            zones=len(self.zones),
        )
        checker = Checker(self)
        outcome.violations = checker.check(attempts, dials)
        outcome.dialled_while_paused = checker.dialled_while_paused
        outcome.seconds = time.monotonic() - started
        return outcome


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def seed_from_env(name: str = "SIMULATION_SEED") -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)
