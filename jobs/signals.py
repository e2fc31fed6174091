"""Signals about jobs, sent after the change has committed."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with: job (Job), outcome (str or None). Fired once per job when it
# reaches a terminal status (completed, failed or cancelled).
job_finished = Signal()
