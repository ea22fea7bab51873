"""Browser tests: Playwright driving Debian's chromium against the real app.

`live_server` serves the app from a thread on 127.0.0.1 (its own SQLite copy,
the session's Valkey) and can start a real `rq worker` process against the
same database and Redis (`live_server.start_worker()`), so job-driven pages
change while the browser watches.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app import create_app
from app.extensions import db, rq
from tests.conftest import REPO, _test_config
from tests.support.servers import CleanupIfKilled


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    return {**browser_type_launch_args, "executable_path": chromium,
            "args": ["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run"]}


@dataclass
class LiveServer:
    url: str
    app: object
    env: dict
    workers: list = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen:
        """A real `rq worker` process (forking, with the scheduler) on the same DB and Redis."""
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "rq"), "worker", "--url", self.env["REDIS_URL"], "-w",
             "jobs.worker.AppWorker", "--with-scheduler", "--logging_level", "WARNING", "default", "mail"],
            cwd=REPO, env=self.env, start_new_session=True)
        self.workers.append((proc, CleanupIfKilled(["kill", proc.pid])))
        return proc

    def stop_workers(self) -> None:
        for proc, cleanup in self.workers:
            cleanup.cancel()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.workers.clear()


@pytest.fixture
def live_server_config() -> dict:
    """Override in a test module to add config (e.g. DNS_NAMESERVERS, SMTP_URL)."""
    return {}


@pytest.fixture
def live_server(tmp_path, redis_url, sqlite_template, live_server_config):
    db_path = tmp_path / "live.db"
    shutil.copy(sqlite_template, db_path)
    config = _test_config(f"sqlite:///{db_path}", redis_url, tmp_path, **live_server_config)
    config.pop("SERVER_NAME", None)
    app = create_app(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**os.environ, "BASE_URL": url, "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": redis_url,
           "SECRET_KEY": config["SECRET_KEY"], "MAIL_FROM": config["MAIL_FROM"]}
    for key in ("SMTP_URL", "DNS_NAMESERVERS"):
        if config.get(key):
            env[key] = config[key]
    with app.app_context():
        rq.connection.flushall()
    live = LiveServer(url=url, app=app, env=env)
    yield live
    live.stop_workers()
    server.shutdown()
    thread.join(5)
    with app.app_context():
        db.engine.dispose()


def wait_until(predicate, timeout: float = 15, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def sign_in_with_password(page, email: str, password: str, *, url: str | None = None) -> None:
    """The email step, then the password step, in the browser: from `url`'s /login, or
    from the sign-in page the browser was sent to."""
    if url is not None:
        page.goto(f"{url}/login")
    page.get_by_label("Work email").fill(email)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
