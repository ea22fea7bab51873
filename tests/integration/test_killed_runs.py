"""A test run killed before its fixtures' teardown (SIGKILL, a `timeout` around pytest) still
stops the servers it started (tests.support.servers.CleanupIfKilled)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.servers import PostgresServer

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.support.servers import PostgresServer
server = PostgresServer().start()
print(server.base, flush=True)
time.sleep(600)  # killed long before
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not PostgresServer.available(), reason="PostgreSQL is not installed (make test installs it)")
def test_a_killed_run_still_stops_its_postgres_cluster():
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO)], stdout=subprocess.PIPE, text=True)
    base = Path(child.stdout.readline().strip())
    try:
        assert base.name.startswith("gatehouse-pg-")
        postmaster = int((base / "data" / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)
        child.send_signal(signal.SIGKILL)  # no teardown, no atexit
        child.wait()
        deadline = time.monotonic() + 15
        while alive(postmaster) or base.exists():
            assert time.monotonic() < deadline, "the cluster outlived the killed run"
            time.sleep(0.1)
    finally:
        if child.poll() is None:
            child.kill()
