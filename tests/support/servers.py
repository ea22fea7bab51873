"""Real servers the tests start and stop: Valkey (Redis-compatible), SMTP, PostgreSQL, DNS."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
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


PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin") or ["/nonexistent"])[-1])


def _as_postgres(*cmd):
    runuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(runuser + [str(c) for c in cmd], check=True, capture_output=True)


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
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.base}"

    def stop(self):
        _as_postgres(PG_BIN / "pg_ctl", "-D", self.base / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
