"""Signals sent after a batch transition has committed.

Receivers (webhooks, worker wake-ups) run only once the change is durable, so
no one is ever notified of a transition that rolled back.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent with: batch (Batch), event (BatchEvent), action (str).
batch_transitioned = Signal()
