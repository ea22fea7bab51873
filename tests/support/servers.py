"""Real servers the tests start and stop: Valkey (Redis-compatible), SMTP, PostgreSQL, DNS."""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from email import message_from_bytes, policy
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox(list):
    """aiosmtpd handler keeping every message received, parsed."""

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        msg.envelope_to = list(envelope.rcpt_tos)
        self.append(msg)
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self if address.lower() in (a.lower() for a in m.envelope_to)]

    @staticmethod
    def text(msg) -> str:
        return msg.get_body(preferencelist=("plain",)).get_content()


class SmtpServer:
    def __init__(self):
        from aiosmtpd.controller import Controller
        self.port = free_port()
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


# --- cleaning up after a test run that was killed -------------------------------------------------

_WATCHER = """
import json, os, subprocess, sys, time
parent, commands = int(sys.argv[1]), json.loads(sys.argv[2])
while os.getppid() == parent:  # re-parented once the test process is gone (even if nobody reaps it)
    time.sleep(0.5)
for command in commands:
    subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class CleanupIfKilled:
    """Runs `commands` if this test process dies before its fixtures' teardown can (SIGKILL, a
    `timeout` around pytest): a small watcher process notices, then stops the server we started.
    On a normal stop, `cancel()` first."""

    def __init__(self, *commands: list):
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHER, str(os.getpid()), json.dumps([[str(a) for a in c] for c in commands])],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cancel(self) -> None:
        self.process.kill()
        self.process.wait()


PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin") or ["/nonexistent"])[-1])


def _postgres_command(*cmd) -> list[str]:
    runuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return runuser + [str(c) for c in cmd]


def _as_postgres(*cmd):
    subprocess.run(_postgres_command(*cmd), check=True, capture_output=True)


class PostgresServer:
    """A throwaway cluster on a unix socket (initdb and pg_ctl refuse root, hence runuser)."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="gatehouse-pg-"))

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists()

    def start(self):
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        _as_postgres(PG_BIN / "initdb", "-D", self.base / "data", "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--no-sync")
        _as_postgres(PG_BIN / "pg_ctl", "-D", self.base / "data", "-l", self.base / "log", "-w", "start",
                     "-o", f"-k {self.base} -c listen_addresses='' -c fsync=off -c full_page_writes=off")
        self.cleanup = CleanupIfKilled(self._stop_command(), ["rm", "-rf", self.base])
        return self

    def _stop_command(self) -> list[str]:
        return _postgres_command(PG_BIN / "pg_ctl", "-D", self.base / "data", "-m", "immediate", "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.base}"

    def stop(self):
        self.cleanup.cancel()
        subprocess.run(self._stop_command(), check=True, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
