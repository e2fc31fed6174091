"""The test settings for ``qcluster`` processes whose scheduler must run at
once: django-q2's guard loop calls the scheduler when it has counted 30 s of
cycles, so with a 30 s cycle it does on the first one, right after the
cluster starts (and then every 30 s, as in production). Its INFO log names
each task it creates from a schedule."""

from __future__ import annotations

from callcenter.settings_test import *  # noqa: F403
from callcenter.settings_test import LOGGING, Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "guard_cycle": 30}
LOGGING["loggers"]["django-q"] = {"level": "INFO"}  # type: ignore[index]
