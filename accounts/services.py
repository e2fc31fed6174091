from __future__ import annotations

NO_CREDITS_REASON = "no credits"
