"""A network namespace joined to the host by a veth pair, for the partition
test: a process started with ``NetNamespace.command`` reaches the host only
through the pair, which ``cut()`` takes down and ``heal()`` brings back."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

from callcenter.tests.servers import Unavailable

__all__ = ["NetNamespace", "Unavailable"]


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise Unavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class NetNamespace:
    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root")
        if not shutil.which("ip"):
            raise Unavailable("the ip command (iproute2) is not installed")
        tag = os.getpid() % 100_000
        self.name = f"cc-part-{tag}"
        self.host_if, self.ns_if = f"ccp{tag}h", f"ccp{tag}n"
        subnet = tag % 250 + 1
        self.host_ip, self.ns_ip = f"10.203.{subnet}.1", f"10.203.{subnet}.2"
        self.remove()  # left over by a run that was killed
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self.exec_ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            self.exec_ip("link", "set", self.ns_if, "up")
            self.exec_ip("link", "set", "lo", "up")
        except Unavailable:
            self.remove()
            raise

    def exec_ip(self, *args: str) -> str:
        return _ip("-n", self.name, *args)

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        """Kill what still runs in the namespace, then delete it and the
        pair (deleting one end deletes the other). Never raises."""
        with contextlib.suppress(Unavailable, OSError, subprocess.SubprocessError):
            for pid in _ip("netns", "pids", self.name).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(Unavailable, OSError, subprocess.SubprocessError):
            _ip("link", "del", self.host_if)
        with contextlib.suppress(Unavailable, OSError, subprocess.SubprocessError):
            _ip("netns", "del", self.name)
