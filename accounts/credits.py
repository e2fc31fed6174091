"""Credits: add, reserve, settle, and what happens when an account runs out.

The balance lives in one column, ``accounts_account.credits``, with a CHECK
that it is never negative. Every change goes through one conditional UPDATE
and leaves a ``CreditEntry`` in the ledger.

* A call's cost is reserved when it starts: ``credits_reserve`` takes the
  amount only if the balance covers it, in a single statement, so any number
  of concurrent workers can never spend more than the balance.
* When it ends, ``credits_settle`` charges the real cost: it refunds the
  unused part of the reservation or charges the extra minutes, never more
  than what is left.
* When a reservation fails, ``account_suspend_for_credits`` announces that
  the account ran out (``accounts.signals``): ``batches`` pauses the account's
  active batches (source ``system``, reason ``no credits``) and ``jobs``
  suspends its pending and scheduled jobs.
* ``credits_add`` undoes exactly that: it announces that the account can pay
  again, and the batches the system paused for credits resume (a batch a
  person paused stays paused) and the suspended jobs return to the queue.

The account row is the lock that orders suspension and top-up: both take it
``FOR UPDATE`` and re-check the balance, so a suspension that loses the race
to a top-up does nothing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from accounts import signals
from accounts.models import Account, CreditEntry
from callcenter import metrics
from callcenter.actor import Actor
from callcenter.exceptions import DomainError
from callcenter.prepared import fetch_prepared

logger = logging.getLogger(__name__)

NO_CREDITS_REASON = "no credits"
# Outcomes of calls that never reached anyone: only their minutes (none) cost.
_UNCONNECTED_OUTCOMES = frozenset({"error"})


class InvalidCreditAmountError(DomainError):
    code = "invalid_amount"
    status_code = 400


@dataclass(frozen=True)
class CreditsAdded:
    balance: int
    resumed_batches: list[str] = field(default_factory=list)
    unsuspended_jobs: int = 0


@dataclass(frozen=True)
class Suspension:
    paused_batches: list[str] = field(default_factory=list)
    suspended_jobs: int = 0


# --- The cost rule ------------------------------------------------------------


def started_minutes(duration_seconds: float) -> int:
    return max(0, math.ceil(duration_seconds / 60))


def call_cost(*, duration_seconds: float, outcome: str | None = None) -> int:
    """The price of a call that ended: per call, plus per started minute."""
    per_call = settings.CALL_COST_PER_CALL
    if outcome in _UNCONNECTED_OUTCOMES:
        per_call = 0
    return per_call + settings.CALL_COST_PER_STARTED_MINUTE * started_minutes(
        duration_seconds
    )


def call_reservation() -> int:
    """What is reserved when a call starts: the per-call price and the first
    CALL_RESERVE_MINUTES minutes. An account with less cannot start a call."""
    return (
        settings.CALL_COST_PER_CALL
        + settings.CALL_COST_PER_STARTED_MINUTE * settings.CALL_RESERVE_MINUTES
    )


# --- Ledger helpers -------------------------------------------------------------


def _entry(
    *,
    account_id: int,
    kind: str,
    amount: int,
    balance_after: int,
    actor: Actor | None = None,
    job_pk: int | None = None,
    claim_key: str = "",
    note: str = "",
) -> CreditEntry:
    return CreditEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=balance_after,
        job_pk=job_pk,
        claim_key=claim_key,
        **(actor or Actor(source="worker")).audit_fields(),
        note=note[:255],
    )


def claim_key(claimed_at: datetime | None) -> str:
    return claimed_at.isoformat() if claimed_at else ""


def share_lock_clause() -> str:
    # SQLite (make run) has no row locks: its IMMEDIATE transactions already
    # serialize every writer.
    return " FOR SHARE" if connection.vendor == "postgresql" else ""


def _without_flush_wait() -> None:
    """Commit this transaction without waiting for its WAL flush.

    Every worker of an account updates the same account row to reserve and to
    settle. Waiting for the flush while holding that row lock serialised the
    account's calls on the disk (measured: 224 -> 74 calls/s). It is safe
    here: the worker's next step after a reserve is ``mark_dialed``, a normal
    commit, and PostgreSQL flushes WAL in order, so the reservation is durable
    before any call is dialled; a settle lost in a server crash is an orphaned
    reservation, which ``credits_settle_orphans`` settles from the attempt log.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def fetch_one_statement(name: str, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """Run one statement, prepared as ``name``, as a transaction of its own
    and return its rows.

    In autocommit (the worker) that costs one round trip: no BEGIN, no
    COMMIT. Inside a transaction a savepoint keeps a failed statement from
    spoiling it.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            return fetch_prepared(name, sql, params)
    return fetch_prepared(name, sql, params)


def _execute(sql: str, params: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


# --- Reserve and settle -----------------------------------------------------------


def credits_reserve(
    *, account_id: int, amount: int, job_pk: int | None = None, key: str = ""
) -> bool:
    """Take ``amount`` from the balance if it covers it. One statement: two
    workers reserving the last credits at once cannot both succeed, because
    the second one's UPDATE re-checks ``credits >= amount`` on the row the
    first one wrote.

    Idempotent per (job, claim): reserving again for the same claim returns
    True without taking anything.
    """
    if amount <= 0:
        return True
    with transaction.atomic():
        _without_flush_wait()
        if (
            job_pk is not None
            and CreditEntry.objects.filter(
                job_pk=job_pk, claim_key=key, kind=CreditEntry.Kind.RESERVE
            ).exists()
        ):
            return True
        if connection.vendor == "postgresql":
            return _reserve_pg(
                account_id=account_id, amount=amount, job_pk=job_pk, key=key
            )
        row = _execute(
            "UPDATE accounts_account SET credits = credits - %s, updated_at = %s"
            " WHERE id = %s AND credits >= %s RETURNING credits",
            [amount, timezone.now(), account_id, amount],
        )
        if row is None:
            return False
        try:
            with transaction.atomic():
                _entry(
                    account_id=account_id,
                    kind=CreditEntry.Kind.RESERVE,
                    amount=-amount,
                    balance_after=int(row[0]),
                    job_pk=job_pk,
                    claim_key=key,
                )
        except IntegrityError:
            # A concurrent reserve for the same claim won; give ours back.
            transaction.set_rollback(True)
            return True
    metrics.CREDITS_RESERVED.inc(amount)
    return True


# The account row is every worker's hot spot: take its lock in the last
# statement before COMMIT, so it is held for one round trip, not four.
_TAKE_SQL = """
WITH taken AS (
    UPDATE accounts_account
       SET credits = credits - %(amount)s, updated_at = now()
     WHERE id = %(account)s AND credits >= %(amount)s
 RETURNING credits
)
INSERT INTO accounts_creditentry
    (account_id, kind, amount, balance_after, job_pk, claim_key, source,
     actor_id, actor_label, remote_addr, note, created_at)
SELECT %(account)s, '{kind}', -%(amount)s, taken.credits, %(job)s, %(key)s,
       'worker', NULL, '', NULL, {note}, now()
  FROM taken
RETURNING balance_after
"""

_RESERVE_SQL = _TAKE_SQL.format(kind="reserve", note="''")


def _reserve_pg(*, account_id: int, amount: int, job_pk: int | None, key: str) -> bool:
    try:
        with transaction.atomic():
            row = _execute(
                _RESERVE_SQL,
                {"amount": amount, "account": account_id, "job": job_pk, "key": key},
            )
    except IntegrityError as exc:
        # A concurrent reserve for the same claim won (the ledger's unique
        # index), so the claim is reserved. Anything else, the balance CHECK
        # included, took nothing: a failed reservation must never read as one
        # that succeeded.
        return _sqlstate(exc) == UNIQUE_VIOLATION
    if row is not None:
        metrics.CREDITS_RESERVED.inc(amount)
    return row is not None


UNIQUE_VIOLATION = "23505"


def _sqlstate(exc: IntegrityError) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


# The same statement for each further minute of a call: its own ledger kind,
# and a note saying which minute.
_EXTEND_SQL = _TAKE_SQL.format(kind="extend", note="%(note)s")


def extension_key(key: str, minute: int) -> str:
    """The ledger key of a claim's further minute ``minute`` (1-based)."""
    return f"{key}#{minute}"


def credits_extend(*, account_id: int, job_pk: int, key: str, minute: int) -> bool:
    """Reserve one further minute of a call in progress: its ``minute``-th
    (the first CALL_RESERVE_MINUTES were reserved with the call). One
    statement, taken only if the balance covers it, as ``credits_reserve``.
    False means the account cannot pay for that minute. Idempotent per
    (claim, minute); the settlement counts these entries in.
    """
    amount = settings.CALL_COST_PER_STARTED_MINUTE
    if amount <= 0:
        return True
    ledger_key, note = extension_key(key, minute), f"minute {minute}"
    params = {
        "amount": amount,
        "account": account_id,
        "job": job_pk,
        "key": ledger_key,
        "note": note,
    }
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                if _execute(_EXTEND_SQL, params) is not None:
                    metrics.CREDITS_RESERVED.inc(amount)
                    return True
                return _extension_exists(job_pk, ledger_key)
            row = _execute(
                "UPDATE accounts_account SET credits = credits - %s, updated_at = %s"
                " WHERE id = %s AND credits >= %s RETURNING credits",
                [amount, timezone.now(), account_id, amount],
            )
            if row is None:
                return _extension_exists(job_pk, ledger_key)
            _entry(
                account_id=account_id,
                kind=CreditEntry.Kind.EXTEND,
                amount=-amount,
                balance_after=int(row[0]),
                job_pk=job_pk,
                claim_key=ledger_key,
                note=note,
            )
            metrics.CREDITS_RESERVED.inc(amount)
            return True
    except IntegrityError:
        return True  # this minute was reserved before (a retried round)


def _extension_exists(job_pk: int, ledger_key: str) -> bool:
    # A retried round: the minute was paid for before the balance ran low.
    return CreditEntry.objects.filter(
        job_pk=job_pk, claim_key=ledger_key, kind=CreditEntry.Kind.EXTEND
    ).exists()


def _extended(job_pk: int, key: str) -> int:
    """What the further minutes of a claim have reserved, in all."""
    total = CreditEntry.objects.filter(
        job_pk=job_pk,
        kind=CreditEntry.Kind.EXTEND,
        claim_key__startswith=f"{key}#",
    ).aggregate(total=Sum("amount"))["total"]
    return -int(total or 0)


_SETTLE_SQL = """
UPDATE accounts_account AS a
   SET credits = GREATEST(locked.credits + %s, 0), updated_at = now()
  FROM (SELECT id, credits FROM accounts_account WHERE id = %s FOR UPDATE) AS locked
 WHERE a.id = locked.id
RETURNING a.credits, locked.credits
"""


def credits_settle(
    *,
    account_id: int,
    job_pk: int,
    key: str,
    cost: int,
    note: str = "",
) -> int:
    """Settle a claim's reservation against its real ``cost``.

    Refunds what was reserved but not used, or charges the extra; an extra
    charge takes at most what is left (the balance never goes below zero,
    and the shortfall is written in the entry's note). Idempotent per claim.
    Returns the amount actually moved (negative = charged).
    """
    with transaction.atomic():
        _without_flush_wait()
        reserved_entry = (
            CreditEntry.objects.select_for_update()
            .filter(job_pk=job_pk, claim_key=key, kind=CreditEntry.Kind.RESERVE)
            .first()
        )
        if CreditEntry.objects.filter(
            job_pk=job_pk, claim_key=key, kind=CreditEntry.Kind.SETTLE
        ).exists():
            return 0
        reserved = -reserved_entry.amount if reserved_entry else 0
        reserved += _extended(job_pk, key)
        refund = reserved - cost
        if connection.vendor == "postgresql":
            # Lock, cap and write the account row in one statement, late in
            # the transaction: it is every worker's hot spot.
            balance, before = _execute(_SETTLE_SQL, [refund, account_id])
            moved = int(balance) - int(before)
        else:
            balance = _lock_account(account_id).credits
            # The row is locked: the charge can be capped at what is left.
            moved = refund if refund >= 0 else -min(balance, -refund)
            if moved:
                row = _execute(
                    "UPDATE accounts_account SET credits = credits + %s,"
                    " updated_at = %s WHERE id = %s RETURNING credits",
                    [moved, timezone.now(), account_id],
                )
                balance = int(row[0])
        if refund < 0 and moved > refund:
            note = f"{note} shortfall {moved - refund}".strip()
        _entry(
            account_id=account_id,
            kind=CreditEntry.Kind.SETTLE,
            amount=moved,
            balance_after=balance,
            job_pk=job_pk,
            claim_key=key,
            note=note or f"cost {cost}, reserved {reserved}",
        )
    metrics.count_settled(moved)
    return moved


# --- Many claims at once ----------------------------------------------------------
#
# A worker reserves for every job of a claim, and settles every call that ended
# in the same round, in one statement each: one round trip and one short lock
# of the account row instead of one transaction per call. Each statement takes
# the common case only (the balance covers everything, no settle is capped); it
# writes nothing otherwise, and the caller falls back to the one-claim functions
# above, which handle running out, capping and retries. Both commit without
# waiting for the WAL flush, for the reasons given in _without_flush_wait: the
# setting is made inside the statement, which is its own transaction.

ASYNC_COMMIT_CTE = (
    "async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
)

_RESERVE_MANY_SQL = f"""
WITH {ASYNC_COMMIT_CTE},
wanted AS (
    SELECT w.job_pk, w.claim_key, row_number() OVER (ORDER BY w.ord) AS n
      FROM unnest(%(jobs)s::bigint[], %(keys)s::text[])
           WITH ORDINALITY AS w(job_pk, claim_key, ord)
     WHERE NOT EXISTS (
           SELECT 1 FROM accounts_creditentry e
            WHERE e.job_pk = w.job_pk AND e.claim_key = w.claim_key
              AND e.kind = 'reserve')
),
total AS (SELECT count(*) AS n FROM wanted),
taken AS (
    UPDATE accounts_account
       SET credits = credits - %(amount)s * total.n, updated_at = now()
      FROM total, async_commit
     WHERE id = %(account)s AND total.n > 0 AND credits >= %(amount)s * total.n
 RETURNING credits, total.n AS n
)
INSERT INTO accounts_creditentry
    (account_id, kind, amount, balance_after, job_pk, claim_key, source,
     actor_id, actor_label, remote_addr, note, created_at)
SELECT %(account)s, 'reserve', -%(amount)s,
       taken.credits + %(amount)s * (taken.n - wanted.n),
       wanted.job_pk, wanted.claim_key, 'worker', NULL, '', NULL, '', now()
  FROM taken CROSS JOIN wanted
RETURNING job_pk
"""


def credits_reserve_many(
    *, account_id: int, amount: int, claims: list[tuple[int, str]]
) -> set[int]:
    """Reserve ``amount`` for each (job pk, claim key) of one account.

    All or nothing, in one statement: returns the job pks reserved, which is
    every claim not reserved before when the balance covers them all, and
    none otherwise (the caller then reserves one by one with
    ``credits_reserve``, which also answers for claims reserved before).
    """
    if not claims or amount <= 0 or connection.vendor != "postgresql":
        return set()
    params = {
        "account": account_id,
        "amount": amount,
        "jobs": [job_pk for job_pk, _ in claims],
        "keys": [key for _, key in claims],
    }
    try:
        reserved = {
            int(row[0])
            for row in fetch_one_statement(
                "callcenter_reserve_many", _RESERVE_MANY_SQL, params
            )
        }
    except IntegrityError:
        # A concurrent reserve of one of these claims won: take the slow path.
        return set()
    metrics.CREDITS_RESERVED.inc(amount * len(reserved))
    return reserved


_SETTLE_MANY_SQL = f"""
WITH {ASYNC_COMMIT_CTE},
todo AS (
    SELECT i.job_pk, i.claim_key, i.cost, i.note, i.ord,
           COALESCE(-r.amount, 0) + x.extended AS reserved,
           COALESCE(-r.amount, 0) + x.extended - i.cost AS refund
      FROM unnest(%(jobs)s::bigint[], %(keys)s::text[], %(costs)s::bigint[],
                  %(notes)s::text[])
           WITH ORDINALITY AS i(job_pk, claim_key, cost, note, ord)
      LEFT JOIN accounts_creditentry r
        ON r.job_pk = i.job_pk AND r.claim_key = i.claim_key AND r.kind = 'reserve'
      -- The further minutes reserved while the call ran (credits_extend).
      CROSS JOIN LATERAL (
           SELECT COALESCE(-sum(e.amount), 0)::bigint AS extended
             FROM accounts_creditentry e
            WHERE e.job_pk = i.job_pk AND e.kind = 'extend'
              AND starts_with(e.claim_key, i.claim_key || '#')) x
     WHERE NOT EXISTS (
           SELECT 1 FROM accounts_creditentry s
            WHERE s.job_pk = i.job_pk AND s.claim_key = i.claim_key
              AND s.kind = 'settle')
),
steps AS (
    SELECT todo.*, sum(refund) OVER (ORDER BY ord) AS running FROM todo
),
locked AS (
    SELECT id, credits FROM accounts_account WHERE id = %(account)s FOR UPDATE
),
moved AS (
    UPDATE accounts_account AS a
       SET credits = locked.credits + (SELECT sum(refund) FROM todo),
           updated_at = now()
      FROM locked, async_commit
     WHERE a.id = locked.id
       AND EXISTS (SELECT 1 FROM todo)
       -- The common case only: no step of the running balance goes below
       -- zero, so no charge has to be capped.
       AND locked.credits + (SELECT min(running) FROM steps) >= 0
 RETURNING locked.credits AS before
)
INSERT INTO accounts_creditentry
    (account_id, kind, amount, balance_after, job_pk, claim_key, source,
     actor_id, actor_label, remote_addr, note, created_at)
SELECT %(account)s, 'settle', steps.refund, moved.before + steps.running,
       steps.job_pk, steps.claim_key, 'worker', NULL, '', NULL,
       left(CASE WHEN steps.note <> '' THEN steps.note
                 ELSE 'cost ' || steps.cost || ', reserved ' || steps.reserved
            END, 255),
       now()
  FROM moved CROSS JOIN steps
RETURNING job_pk, amount
"""


@dataclass(frozen=True)
class Settlement:
    job_pk: int
    key: str
    cost: int
    note: str = ""


def credits_settle_many(*, account_id: int, settlements: list[Settlement]) -> None:
    """Settle many claims of one account: ``credits_settle`` for each, with the
    common case (nothing to cap) done in one statement."""
    done: set[int] = set()
    if settlements and connection.vendor == "postgresql":
        params = {
            "account": account_id,
            "jobs": [s.job_pk for s in settlements],
            "keys": [s.key for s in settlements],
            "costs": [s.cost for s in settlements],
            "notes": [s.note for s in settlements],
        }
        try:
            rows = fetch_one_statement(
                "callcenter_settle_many", _SETTLE_MANY_SQL, params
            )
        except IntegrityError:
            rows = []  # a concurrent settle of one claim won: one by one
        done = {int(row[0]) for row in rows}
        for row in rows:
            metrics.count_settled(int(row[1]))
    for s in settlements:
        if s.job_pk not in done:
            credits_settle(
                account_id=account_id,
                job_pk=s.job_pk,
                key=s.key,
                cost=s.cost,
                note=s.note,
            )


# --- Running out, and topping up ----------------------------------------------------


def _lock_account(account_id: int) -> Account:
    return Account.objects.select_for_update().get(pk=account_id)


# What the receivers of accounts.signals return, added up. (django-stubs
# types a receiver's answer as str | None; ours return ids, counts or sets.)


def _batches(responses: list[tuple[Any, Any]]) -> list[str]:
    return [batch_id for _receiver, ids in responses for batch_id in ids]


def _count(responses: list[tuple[Any, Any]]) -> int:
    return sum(count for _receiver, count in responses)


def _accounts(responses: list[tuple[Any, Any]]) -> set[int]:
    return {account_id for _receiver, ids in responses for account_id in ids}


def account_suspend_for_credits(
    *, account_id: int, actor: Actor | None = None
) -> Suspension:
    """The account cannot pay for a call: stop its campaigns until it can.

    Under the account's lock, ``credits_ran_out`` pauses its active batches
    (one row each, so workers stop taking their jobs at once); then
    ``credits_ran_out_committed`` makes its pending and scheduled jobs
    ``suspended``, in chunks (``accounts.signals``). Does nothing if credits
    were added meanwhile.
    """
    actor = actor or Actor.system("credits")
    with transaction.atomic():
        account = _lock_account(account_id)
        if account.credits >= call_reservation():
            return Suspension()
        paused = _batches(
            signals.credits_ran_out.send(
                sender=Account,
                account_id=account_id,
                actor=actor,
                reason=NO_CREDITS_REASON,
            )
        )
    suspended = _count(
        signals.credits_ran_out_committed.send(
            sender=Account,
            account_id=account_id,
            while_balance_below=call_reservation(),
        )
    )
    if paused or suspended:
        logger.warning(
            "account out of credits: campaigns suspended",
            extra={
                "action": "credits.suspended",
                "account_id": account_id,
                "balance": account.credits,
                "paused_batches": paused,
                "suspended_jobs": suspended,
            },
        )
    return Suspension(paused_batches=paused, suspended_jobs=suspended)


def account_balance_below(account_id: int, amount: int) -> bool:
    """Whether the account's balance is below ``amount``, read under a share
    lock (so a top-up in flight is waited for): what a chunked suspension
    re-checks before each chunk. False if the account is gone."""
    row = _execute(
        "SELECT credits FROM accounts_account WHERE id = %s" + share_lock_clause(),
        [account_id],
    )
    return row is not None and int(row[0]) < amount


def _restore_jobs(account_id: int) -> int:
    return _count(
        signals.credits_available_committed.send(sender=Account, account_id=account_id)
    )


def credits_add(
    *,
    account: Account,
    amount: int,
    actor: Actor,
    note: str = "",
    restore_jobs: bool = True,
) -> CreditsAdded:
    """Add credits. If the account can now pay for a call, the batches that
    the system paused for lack of credits resume and suspended jobs return to
    the queue (to ``scheduled`` if their time has not come), through
    ``credits_available`` and ``credits_available_committed``. A batch a
    person paused stays paused; its jobs are ready for when they resume it.

    With ``restore_jobs=False`` the suspended jobs are left for the caller to
    restore with ``credits_unsuspend_jobs`` once its own transaction has
    committed: restoring a large account takes many chunks, and inside a
    caller's transaction it would hold the account row (every settle's lock)
    all that time.
    """
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidCreditAmountError("The amount must be a positive whole number.")
    resumed: list[str] = []
    with transaction.atomic():
        _lock_account(account.pk)
        row = _execute(
            "UPDATE accounts_account SET credits = credits + %s, updated_at = %s"
            " WHERE id = %s RETURNING credits",
            [amount, timezone.now(), account.pk],
        )
        balance = int(row[0])
        _entry(
            account_id=account.pk,
            kind=CreditEntry.Kind.ADD,
            amount=amount,
            balance_after=balance,
            actor=actor,
            note=note,
        )
        can_pay = balance >= call_reservation()
        if can_pay:
            resumed = _resume_credit_paused(account_id=account.pk, actor=actor)
    account.credits = balance
    unsuspended = _restore_jobs(account.pk) if can_pay and restore_jobs else 0
    logger.info(
        "credits added",
        extra={
            "action": "credits.added",
            "account_id": account.pk,
            "amount": amount,
            "balance": balance,
            "source": actor.source,
            "resumed_batches": resumed,
            "unsuspended_jobs": unsuspended,
        },
    )
    return CreditsAdded(
        balance=balance, resumed_batches=resumed, unsuspended_jobs=unsuspended
    )


def credits_unsuspend_jobs(*, account_id: int) -> int:
    """Return the account's suspended jobs to the queue if it can pay for a
    call (the second half of ``credits_add(restore_jobs=False)``)."""
    if not Account.objects.filter(
        pk=account_id, credits__gte=call_reservation()
    ).exists():
        return 0
    return _restore_jobs(account_id)


def _resume_credit_paused(*, account_id: int, actor: Actor) -> list[str]:
    return _batches(
        signals.credits_available.send(
            sender=Account, account_id=account_id, actor=actor
        )
    )


def accounts_reconcile_credits() -> int:
    """Resume what was suspended for credits in accounts that can pay again.

    Two ways to get there without a top-up doing it: a worker whose
    reservation failed just before a top-up committed suspends its job after
    the top-up's sweep; and settled calls refund the unused part of their
    reservations after the account was suspended. Returns the number of
    accounts restored.
    """
    needed = call_reservation()
    account_ids = _accounts(signals.credits_held_accounts.send(sender=Account))
    restored = 0
    actor = Actor.system("credits reconciliation")
    for account_id in sorted(account_ids):
        with transaction.atomic():
            if _lock_account(account_id).credits < needed:
                continue
            _resume_credit_paused(account_id=account_id, actor=actor)
        _restore_jobs(account_id)
        restored += 1
    return restored


def _claim_cost(job: object, key: str, reserved: int) -> tuple[int, str]:
    """What a claim whose settle never came should cost, from the job's
    attempt log: the logged call's price; nothing if it was never dialled or
    never connected; the whole reservation if the worker was lost mid-call."""
    if job is None:
        return reserved, "job gone: reservation kept"
    claimed = datetime.fromisoformat(key) if key else None
    for entry in getattr(job, "attempt_log", None) or []:
        dialled = entry.get("dialed_at") or entry.get("started_at")
        if not dialled or claimed is None:
            continue
        if datetime.fromisoformat(dialled) < claimed:
            continue
        outcome = entry.get("outcome")
        if outcome == "never_connected":
            return 0, "never connected: refunded"
        if outcome == "worker_lost":
            return reserved, "worker lost mid-call: reservation kept"
        return (
            call_cost(
                duration_seconds=float(entry.get("duration_seconds") or 0),
                outcome=outcome,
            ),
            f"settled from the attempt log ({outcome})",
        )
    return 0, "never dialled: refunded"


def credits_settle_orphans(*, older_than_seconds: float | None = None) -> int:
    """Settle reservations whose call will never settle them: the job was
    cancelled between claim and dial, or its worker died. Runs from the
    periodic maintenance; returns how many it settled."""
    from jobs.models import Job

    if older_than_seconds is None:
        older_than_seconds = (
            settings.WORKER_MAX_CALL_SECONDS + 2 * settings.JOB_LEASE_SECONDS
        )
    horizon = timezone.now() - timedelta(seconds=older_than_seconds)
    settled = CreditEntry.objects.filter(
        kind=CreditEntry.Kind.SETTLE,
        job_pk=OuterRef("job_pk"),
        claim_key=OuterRef("claim_key"),
    )
    orphans = (
        CreditEntry.objects.filter(
            kind=CreditEntry.Kind.RESERVE, created_at__lt=horizon
        )
        .exclude(Exists(settled))
        .order_by("id")[:1000]
    )
    count = 0
    for entry in orphans:
        if entry.job_pk is None:
            continue
        job = Job.objects.filter(pk=entry.job_pk).first()
        if (
            job is not None
            and job.status == "in_progress"
            and claim_key(job.claimed_at) == entry.claim_key
        ):
            continue  # still held under this claim: its worker will settle
        reserved = -entry.amount + _extended(entry.job_pk, entry.claim_key)
        cost, note = _claim_cost(job, entry.claim_key, reserved)
        credits_settle(
            account_id=entry.account_id,
            job_pk=entry.job_pk,
            key=entry.claim_key,
            cost=cost,
            note=note,
        )
        count += 1
    return count
