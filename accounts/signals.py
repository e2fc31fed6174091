"""What the accounts app announces about credits, for the apps above it.

``accounts`` sits below ``jobs`` and ``batches`` (README, Layers), so it never
calls them: when an account runs out of credits, or can pay again, it sends
these signals, and ``batches`` and ``jobs`` connect their services in their
``AppConfig.ready()``. The sender is ``Account``; every receiver returns its
result, which ``accounts.services`` adds up for its own return value and log.

Each event has two moments, as the work does:

* ``credits_ran_out`` and ``credits_available`` are sent *inside* the
  transaction that holds the account row ``FOR UPDATE`` and has just re-checked
  the balance: what must change under that lock changes in that transaction
  (batches pause, or resume if the system paused them for credits). Receivers
  return the public ids of the batches they changed.
* ``..._committed`` follow once that transaction is over: receivers move the
  account's jobs in committed chunks (a large account would hold the lock, the
  lock every settle needs, for too long) and return how many moved.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with account_id, actor and reason, in the account's locked transaction
# when it cannot pay for a call. Returns list[str], the batches paused.
credits_ran_out = Signal()

# Sent with account_id and while_balance_below after that transaction: hold
# the account's queued jobs, chunk by chunk, while the balance (re-read under a
# share lock in each chunk) stays below while_balance_below. Returns int.
credits_ran_out_committed = Signal()

# Sent with account_id and actor, in the account's locked transaction when it
# can pay again (credits added, or the reconciliation). Returns list[str], the
# batches resumed.
credits_available = Signal()

# Sent with account_id after that transaction: return the jobs held for
# credits to the queue. Returns int.
credits_available_committed = Signal()

# Sent with no arguments by the reconciliation. Returns set[int], the accounts
# that have work held for credits.
credits_held_accounts = Signal()
