"""5. Ingestion: a CSV of 100,000 contacts uploaded through the API.

The batch is created with the service; the upload is one multipart POST to
/api/v1/batches/{batch_id}/jobs on the gunicorn server, timed from the
request to the response, and the jobs are then counted in the database.
"""

from __future__ import annotations

import io
import time

from bench import before, datagen, server
from bench.context import Context

SECTION = "5 ingestion"


def make_csv(rows: int) -> bytes:
    out = io.StringIO()
    out.write("phone_number,first_name,reference\n")
    for i in range(rows):
        out.write(f"+1415{5000000 + i:07d},Name{i},ref-{i}\n")
    return out.getvalue().encode()


def run(ctx: Context) -> None:
    import requests

    from accounts.models import Account
    from batches.services import batch_create
    from callcenter.actor import Actor
    from jobs.models import Job

    server.require_api()
    datagen.truncate_jobs()
    slug = "bench-ingest"
    account = Account.objects.filter(slug=slug).first() or Account.objects.get(
        pk=datagen.create_account(slug)
    )
    token = server.api_token("bench-ingest", slug)
    batch = batch_create(
        account=account, name="ingest", actor=Actor.system("bench"), is_active=False
    )
    rows = ctx.sizes.import_rows
    body = make_csv(rows)
    with server.Server() as srv:
        srv.warm(token)
        t0 = time.perf_counter()
        r = requests.post(
            f"{srv.url}/api/v1/batches/{batch.batch_id}/jobs",
            headers={"Authorization": f"Token {token}"},
            files={"file": ("contacts.csv", body, "text/csv")},
            timeout=600,
        )
        seconds = time.perf_counter() - t0
    imported = Job.objects.filter(batch=batch).count()
    ctx.report.raw["ingest"] = {
        "rows": rows,
        "bytes": len(body),
        "seconds": seconds,
        "status": r.status_code,
        "imported": imported,
        "response": r.text[:500],
    }
    if r.status_code >= 300 or imported != rows:
        ctx.report.missing.append(
            f"ingest: HTTP {r.status_code}, {imported}/{rows} jobs: {r.text[:200]}"
        )
    rate = imported / seconds
    ctx.report.add(
        SECTION,
        f"CSV import of {rows:,} contacts",
        rate,
        "rows/s",
        target=">= 20,000 rows/s",
        passed=rate >= 20_000 and imported == rows,
        note=f"{seconds:.2f} s, one multipart POST, gunicorn",
        key="ingest",
        before=before.figure("same:CSV import of 100,000 contacts:rows/s"),
    )
    datagen.truncate_jobs()
