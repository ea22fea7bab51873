"""Running jobs inside the Flask app.

`rq worker -w jobs.worker.AppWorker --with-scheduler` forks a child per job;
each job function is wrapped by `app_job`, which pushes the app context (the
current one in tests, else one app per process) and disposes the engine's
inherited connections in a forked child.
"""
from __future__ import annotations

import functools
import os

from flask import Flask, current_app, has_app_context
from rq import SimpleWorker, Worker

_app: Flask | None = None
_pid: int | None = None


def get_app() -> Flask:
    global _app
    if _app is None:
        from app import create_app
        _app = create_app()
    return _app


def app_job(fn):
    @functools.wraps(fn)
    def run_in_app(*args, **kwargs):
        if has_app_context():
            return fn(*args, **kwargs)
        app = get_app()
        with app.app_context():
            global _pid
            from app.extensions import db
            if _pid != os.getpid():  # a fresh fork: never share the parent's sockets
                db.engine.dispose(close=False)
                _pid = os.getpid()
            try:
                return fn(*args, **kwargs)
            finally:
                db.session.remove()
    return run_in_app


class AppWorker(Worker):
    """The production worker: builds the app once before forking."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        get_app()


class AppSimpleWorker(SimpleWorker):
    """Runs jobs in this process (tests, and platforms without fork)."""


def current_or_new_app() -> Flask:
    return current_app._get_current_object() if has_app_context() else get_app()
