"""Per-batch job counts kept by statement-level triggers on jobs_job.

The triggers write batches_batchjobcount (created in batches 0005); the
reasons for triggers rather than application code, and for the slots, are in
batches/job_counts.py and docs/architecture.md. PostgreSQL only: on SQLite
the counts are read with COUNT(*) and this migration only adds the index.

The SQL is frozen here, as migrations are; a later change to the triggers
gets a migration of its own.
"""

from django.db import migrations, models

# 'cnts': the advisory-lock class of the count slots (jobs.imports uses 'jobs').
LOCK_CLASS = 0x636E7473
SLOTS = 32

CREATE_SQL = f"""
-- A slot this transaction owns: transactions never share a slot, so the
-- counter rows they add to are never locked by another open transaction and
-- 8 claimers of one batch do not queue on one row. A transaction-level
-- advisory lock marks ownership; it is re-entrant, so a second statement of
-- the same transaction finds its own slot again. Only when every slot is
-- taken does a writer wait, for the slot its backend id points at.
CREATE FUNCTION batch_job_count_slot() RETURNS smallint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  base int := mod(pg_backend_pid(), {SLOTS});
  s int;
BEGIN
  FOR i IN 0..{SLOTS - 1} LOOP
    s := mod(base + i, {SLOTS});
    IF pg_try_advisory_xact_lock({LOCK_CLASS}, s) THEN
      RETURN s;
    END IF;
  END LOOP;
  PERFORM pg_advisory_xact_lock({LOCK_CLASS}, base);
  RETURN base;
END $$;

CREATE FUNCTION batch_job_counts_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO batches_batchjobcount AS c (batch_id, status, slot, n)
  SELECT d.batch_id, d.status, batch_job_count_slot(), d.n
    FROM (SELECT batch_id, status, count(*) AS n
            FROM new_rows
           WHERE batch_id IS NOT NULL
           GROUP BY batch_id, status
           ORDER BY batch_id, status) d
  ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION batch_job_counts_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Most updates (heartbeats, dial marks, results) change neither status
  -- nor batch: their deltas cancel out and nothing is written.
  INSERT INTO batches_batchjobcount AS c (batch_id, status, slot, n)
  SELECT d.batch_id, d.status, batch_job_count_slot(), d.n
    FROM (SELECT batch_id, status, sum(n) AS n
            FROM (SELECT batch_id, status, -count(*) AS n
                    FROM old_rows WHERE batch_id IS NOT NULL
                   GROUP BY batch_id, status
                  UNION ALL
                  SELECT batch_id, status, count(*)
                    FROM new_rows WHERE batch_id IS NOT NULL
                   GROUP BY batch_id, status) x
           GROUP BY batch_id, status
          HAVING sum(n) <> 0
           ORDER BY batch_id, status) d
  ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION batch_job_counts_remove() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO batches_batchjobcount AS c (batch_id, status, slot, n)
  SELECT d.batch_id, d.status, batch_job_count_slot(), -d.n
    FROM (SELECT batch_id, status, count(*) AS n
            FROM old_rows
           WHERE batch_id IS NOT NULL
           GROUP BY batch_id, status
           ORDER BY batch_id, status) d
  ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION batch_job_counts_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM batches_batchjobcount;
  RETURN NULL;
END $$;

CREATE TRIGGER batch_job_counts_insert AFTER INSERT ON jobs_job
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION batch_job_counts_add();
CREATE TRIGGER batch_job_counts_update AFTER UPDATE ON jobs_job
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION batch_job_counts_move();
CREATE TRIGGER batch_job_counts_delete AFTER DELETE ON jobs_job
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION batch_job_counts_remove();
CREATE TRIGGER batch_job_counts_truncate AFTER TRUNCATE ON jobs_job
  FOR EACH STATEMENT EXECUTE FUNCTION batch_job_counts_clear();

-- The jobs already there. CREATE TRIGGER has locked out writers until this
-- migration commits, so the count and the triggers start from one state.
DELETE FROM batches_batchjobcount;
INSERT INTO batches_batchjobcount (batch_id, status, slot, n)
SELECT batch_id, status, 0, count(*)
  FROM jobs_job
 WHERE batch_id IS NOT NULL
 GROUP BY batch_id, status;
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS batch_job_counts_insert ON jobs_job;
DROP TRIGGER IF EXISTS batch_job_counts_update ON jobs_job;
DROP TRIGGER IF EXISTS batch_job_counts_delete ON jobs_job;
DROP TRIGGER IF EXISTS batch_job_counts_truncate ON jobs_job;
DROP FUNCTION IF EXISTS batch_job_counts_add();
DROP FUNCTION IF EXISTS batch_job_counts_move();
DROP FUNCTION IF EXISTS batch_job_counts_remove();
DROP FUNCTION IF EXISTS batch_job_counts_clear();
DROP FUNCTION IF EXISTS batch_job_count_slot();
DELETE FROM batches_batchjobcount;
"""


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('batches', '0005_job_counts'),
        ('jobs', '0006_call_record'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('started_at__isnull', False)), fields=['batch', 'started_at'], name='job_batch_started_idx'),
        ),
        migrations.RunPython(_run(CREATE_SQL), _run(DROP_SQL)),
    ]
