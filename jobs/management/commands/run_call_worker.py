from __future__ import annotations

import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from prometheus_client import start_http_server

from callcenter.commands import TranslatedCommand
from jobs.dialers import get_dialer
from jobs.worker import CallWorker, default_worker_id, lower_cpu_priority

logger = logging.getLogger("jobs.worker")


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Claim pending jobs and place their calls. Run as many as you like, "
        "on any machines, against one PostgreSQL database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--worker-id", default="")
        parser.add_argument("--dialer", default="")
        parser.add_argument(
            "--burst", action="store_true", help=_("exit once nothing is claimable")
        )
        parser.add_argument(
            "--once", action="store_true", help=_("one claim round, then exit")
        )
        parser.add_argument("--max-jobs", type=int, default=None)
        parser.add_argument("--shutdown-timeout", type=float, default=30.0)
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help=_(
                "serve Prometheus metrics over HTTP on this port (0: any free port)"
            ),
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",
            help=_("address of the metrics port (default all interfaces)"),
        )
        parser.add_argument(
            "--nice",
            type=int,
            default=None,
            choices=range(20),
            metavar="N",
            help=_("lower this worker's CPU priority by N (0-19; default WORKER_NICE)"),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        nice = options["nice"] if options["nice"] is not None else settings.WORKER_NICE
        lower_cpu_priority(nice)
        dialer = get_dialer(options["dialer"] or settings.CALL_DIALER)
        worker = CallWorker(
            dialer=dialer,
            worker_id=options["worker_id"] or default_worker_id(),
            concurrency=options["concurrency"],
            burst=options["burst"],
            once=options["once"],
            max_jobs=options["max_jobs"],
            shutdown_timeout=options["shutdown_timeout"],
        )
        if options["metrics_port"] is not None:
            server, _thread = start_http_server(
                options["metrics_port"], addr=options["metrics_address"]
            )
            port = server.server_address[1]
            logger.info(
                "metrics served",
                extra={"action": "worker.metrics_port", "port": port},
            )
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
        worker.run()
