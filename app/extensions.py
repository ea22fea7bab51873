"""Extensions, created unbound and attached in create_app()."""
from __future__ import annotations

import redis
from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from rq import Queue

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


class RedisQueues:
    """One Redis connection per app, and the RQ queues on it.

    Redis holds queues, rate-limit counters and short-lived state only: the
    database is the source of truth, so losing Redis delays work, loses nothing.
    """

    names = ("default", "mail")

    def init_app(self, app: Flask) -> None:
        app.extensions["redis"] = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )

    @property
    def connection(self) -> redis.Redis:
        return current_app.extensions["redis"]

    def queue(self, name: str = "default") -> Queue:
        return Queue(name, connection=self.connection, is_async=current_app.config["RQ_ASYNC"])


rq = RedisQueues()
