"""The call-safety simulation at a small size (jobs/tests/simulation.py;
full size: ``python -m bench --only simulation``): real worker processes,
rules changing under them, kill -9s; zero calls that break a rule.

SIMULATION_SEED=N replays a run (the seed is printed on failure)."""

from __future__ import annotations

import pytest

from jobs.tests.simulation import Config, World, database_url, seed_from_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


def test_simulation__no_call_breaks_a_rule(tmp_path):
    seed = seed_from_env()
    world = World(
        Config(
            seed=seed,
            jobs=600,
            numbers=90,
            workers=4,
            seconds=15,
            db_url=database_url(),
            workdir=tmp_path,
            concurrency=3,
            kills=2,
        )
    )
    outcome = world.run()
    print(outcome.summary())
    assert not outcome.violations, (
        f"SIMULATION_SEED={seed}: {outcome.summary()}\n"
        + "\n".join(outcome.violations[:30])
    )
    # The run did what it is for: calls were made and every kind of change
    # happened while workers were dialling.
    assert outcome.attempts >= 5, outcome.summary()
    assert outcome.zones >= 8, outcome.summary()
    for kind in ("dnc", "window", "kill", "cancel", "pause"):
        assert outcome.changes.get(kind, 0) > 0, outcome.summary()
