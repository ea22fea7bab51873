"""`make run`'s supervisor: migrates, seeds, starts every process, prints the two lines, and stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

from tests.conftest import REPO, csrf_token_from
from tests.support.servers import free_port


def _read_line(proc, deadline):
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return line.rstrip("\n")
    raise AssertionError("no output in time")


def test_run_prints_the_url_and_demo_login_and_stops_everything(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "BASE_URL", "SMTP_URL")}
    env.update(PORT=str(port), GATEHOUSE_INSTANCE=str(tmp_path / "instance"))
    proc = subprocess.Popen([sys.executable, "scripts/run.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "run.log", "w"), text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        assert _read_line(proc, deadline) == f"Gatehouse is running at http://127.0.0.1:{port}"
        assert _read_line(proc, deadline) == "Demo admin: admin@acme.test / gatehouse-demo"
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert response.status == 200
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        token = csrf_token_from(opener.open(f"{base}/login", timeout=5).read().decode())
        opener.open(f"{base}/login", data=urlencode({"email": "admin@acme.test", "csrf_token": token}).encode())
        form = {"email": "admin@acme.test", "password": "gatehouse-demo", "csrf_token": token}
        library = opener.open(f"{base}/login/password", data=urlencode(form).encode(), timeout=10)
        assert library.url == f"{base}/library"
        assert "Quarterly roadmap walkthrough" in library.read().decode()
        assert (tmp_path / "instance" / "gatehouse.db").exists()
        assert (tmp_path / "instance" / "valkey.sock").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    time.sleep(0.5)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        raise AssertionError("the web server is still running")
    except OSError:
        pass
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "instance")], capture_output=True, text=True).stdout
    assert leftover.strip() == "", f"processes left running: {leftover}"
