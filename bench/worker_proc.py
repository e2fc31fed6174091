"""`python -m bench.worker_proc [--no-listen]`: run_call_worker's CallWorker.

The same worker class, dialer and loop as `manage.py run_call_worker`; the
only addition is --no-listen, which the command does not offer, so that the
bench can compare LISTEN/NOTIFY with polling alone in the same run.
"""

from __future__ import annotations

import argparse
import os
import signal


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-listen", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--worker-id", default="")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
    import django

    django.setup()
    from jobs.dialers import get_dialer
    from jobs.worker import CallWorker, default_worker_id

    worker = CallWorker(
        dialer=get_dialer("simulated"),
        worker_id=args.worker_id or default_worker_id(),
        concurrency=args.concurrency,
        listen=not args.no_listen,
    )
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()


if __name__ == "__main__":
    main()
