"""Gatehouse: the security settings portal (SSO, authorized domains, SCIM)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    # GATEHOUSE_INSTANCE moves instance/ (secrets, SQLite, mail, embedded Redis) elsewhere.
    app = Flask(__name__, instance_path=os.environ.get("GATEHOUSE_INSTANCE") or None, instance_relative_config=True)
    from app.config import load_config
    app.config.update(load_config(app.instance_path))
    if config:
        app.config.update(config)
    _configure_logging()
    if app.config.get("TRUSTED_PROXIES"):
        # Behind a proxy every request comes from the proxy's address: per-address rate limits
        # would be shared by everyone, and the audit would show the proxy. Trust exactly that many.
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    from app import database, errors, extensions, web
    extensions.db.init_app(app)
    from app.models.base import render_migration_item
    extensions.migrate.init_app(app, extensions.db, directory=str(Path(app.root_path).parent / "migrations"),
                                render_as_batch=True, compare_type=True, render_item=render_migration_item)
    extensions.csrf.init_app(app)
    extensions.htmx.init_app(app)
    extensions.limiter.init_app(app)
    extensions.rq.init_app(app)

    database.init_app(app)
    errors.init_app(app)
    web.init_app(app)
    from app import once
    once.init_app(app)

    from app.auth import sessions
    sessions.init_app(app)

    from app.auth.routes import bp as auth_bp
    from app.main.routes import bp as main_bp
    from app.settings.routes import bp as settings_bp
    from app.members.routes import bp as members_bp
    from app.audit.routes import bp as audit_bp
    for blueprint in (auth_bp, main_bp, settings_bp, members_bp, audit_bp):
        app.register_blueprint(blueprint)
    from app import areas
    areas.register(app)

    from app.cli import register_cli
    register_cli(app)
    return app


def _configure_logging() -> None:
    """Our own messages at INFO on stderr; libraries stay at WARNING (CLI stdout stays clean)."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("app", "jobs"):
        logging.getLogger(name).setLevel(logging.INFO)
