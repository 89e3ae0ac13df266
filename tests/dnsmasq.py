"""Debian's dnsmasq as the tests' DNS server: the records of a headless Service, changed while it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

DNSMASQ = "/usr/sbin/dnsmasq"
DOMAIN = "test"
"""The domain dnsmasq answers for alone: a name of it without records is NXDOMAIN, as in a cluster's DNS."""
STARTUP_TIMEOUT = 10.0


class Records:
    """The A records dnsmasq serves from its hosts directory, which it re-reads whenever a file there changes."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def set(self, name: str, *addresses: str) -> None:
        """`name` has exactly `addresses` from now on (none: it does not exist)."""
        draft = self._directory.parent / f"{name}.draft"
        draft.write_text("".join(f"{address} {name}\n" for address in addresses))
        os.replace(draft, self._directory / name)  # whole, at once: dnsmasq never reads half a file


@contextmanager
def dnsmasq(directory: Path, port: int, srv: tuple[str, ...] = ()) -> Iterator[Records]:
    """dnsmasq on 127.0.0.1:`port` (UDP and TCP) until the block ends, for names under .test: the A records
    of Records.set, and the SRV records `srv` (dnsmasq's --srv-host values). Skips where it is not installed."""
    if shutil.which(DNSMASQ) is None:
        pytest.skip(f"DNS discovery tests need Debian's dnsmasq at {DNSMASQ} (apt-get install dnsmasq-base)")
    hosts = directory / "hosts.d"
    hosts.mkdir(parents=True)
    argv = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
            "--listen-address=127.0.0.1", f"--port={port}", f"--local=/{DOMAIN}/", f"--hostsdir={hosts}",
            "--local-ttl=0", "--user=root", "--pid-file=", f"--log-facility={directory / 'dnsmasq.log'}",
            *(f"--srv-host={record}" for record in srv)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_answering(port, process)
        yield Records(hosts)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_answering(port: int, process: subprocess.Popen[bytes]) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 0.5
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dnsmasq exited with {process.returncode}")
        try:
            resolver.resolve(f"nothing.{DOMAIN}", "A")
        except dns.resolver.NXDOMAIN:
            return
        except dns.exception.DNSException:
            time.sleep(0.05)
    raise TimeoutError(f"dnsmasq did not answer within {STARTUP_TIMEOUT:g} s")
