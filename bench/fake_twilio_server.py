"""`python -m bench.fake_twilio_server SID TOKEN`: the tests' loopback fake
of Twilio's Calls API (jobs/tests/fake_twilio.py) in a process of its own,
so that its threads and CPU are not the worker's nor the bench's.

It prints its base URL on one line, then serves until its standard input
closes. With no script, every call it places stays queued: it never calls
back, so the calls stay in flight for as long as the bench needs.
"""

from __future__ import annotations

import sys

from jobs.tests.fake_twilio import FakeTwilio


def main(argv: list[str]) -> int:
    fake = FakeTwilio(argv[0], argv[1]).start()
    print(fake.base_url, flush=True)
    try:
        sys.stdin.read()
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
