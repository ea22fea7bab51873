"""SAML ACS benchmark (not a test): `python bench/acs.py [--calls 300] [--database-url URL]`.

Measures, in one run and on the same signed responses (keys made here):

- **bare**: python3-saml's `OneLogin_Saml2_Auth.process_response(request_id)`
  with prepared settings — validation only (the floor). Twice: with the
  compiled-once schemas and XPaths Gatehouse installs into it (app.sso.checks),
  which is like for like, and as installed (it reads and compiles the protocol
  XSD, and compiles some 40 XPaths, on every response);
- **floor**: the least any ACS must do, in this app and on this database:
  one WSGI call into a bare view that decodes the form, reads the stored
  request by RelayState, runs the same validation (with the same caches),
  deletes the request, commits and sets the session cookie. On PostgreSQL the
  read deletes the request itself (one statement, as the ACS does). The issue
  calls this "one validation plus one commit";
- **ACS**: Gatehouse's `/sso/saml/<cid>/acs` end to end, one WSGI call into
  the app with the environ a server would hand it (no sockets): the stored
  request looked up by RelayState and consumed, the same validation plus the
  SP checks, the replay cache, the member and domain look-up (on PostgreSQL
  all in the one statement before validation: app/sso/redemption.py), a fresh
  session, the audit event and login log, one commit.

Each call gets its own AuthnRequest (made by the app's /login endpoint, not
timed) and its own signed response (made before timing), as in real use.
Prints mean/median per call, the ratios ACS / bare (target <= 1.5x), and
floor / bare: how much of that budget the floor itself uses here.
Rate limiting is off here (in production it adds one Redis round trip).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onelogin.saml2.auth import OneLogin_Saml2_Auth  # noqa: E402
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from app.sso.checks import install_library_caches  # noqa: E402

from tests.support.saml_idp import TestIdp, encode, read_authn_request  # noqa: E402


def build_app(database_url: str, instance: Path):
    from app import create_app
    from app.extensions import db
    app = create_app({
        "TESTING": False, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench",
        "BASE_URL": "http://bench.test",  # python3-saml wants a dotted host in the ACS URL
        "REDIS_URL": "redis://127.0.0.1:1/0", "RATELIMIT_STORAGE_URI": "memory://", "RATELIMIT_ENABLED": False,
        "MAIL_DIR": str(instance / "mail"), "RQ_ASYNC": False,
    })
    with app.app_context():
        if database_url.startswith("postgresql"):
            db.drop_all()
        db.create_all()
    return app


def add_floor_view(app) -> None:
    """The floor (see above): a view with nothing but what every ACS needs."""
    from flask import redirect, request, session
    from sqlalchemy import bindparam, delete, select
    from sqlalchemy.orm import aliased
    from app.extensions import csrf, db
    from app.models import SamlRequest, SsoConnection
    from app.security import hash_secret
    from app.sso import redemption, sp
    requests = SamlRequest.__table__
    # The stored request and its connection: read, and deleted after validation; on PostgreSQL
    # deleted by the read itself (DELETE ... RETURNING in a WITH), one statement fewer.
    read = (select(SamlRequest, SsoConnection).join(SsoConnection, SsoConnection.id == SamlRequest.connection_pk)
            .where(SamlRequest.relay_state_hash == bindparam("relay_state_hash")))
    consumed = (delete(requests).where(requests.c.relay_state_hash == bindparam("relay_state_hash"))
                .returning(*requests.c).cte("consumed"))
    consumed_request = aliased(SamlRequest, consumed)
    read_and_consume = (select(consumed_request, SsoConnection)
                        .join(SsoConnection, SsoConnection.id == consumed_request.connection_pk))

    @app.post("/bench/floor/<cid>")
    def floor(cid: str):
        in_one = db.session.get_bind().dialect.name == "postgresql"
        stored, conn = db.session.execute(read_and_consume if in_one else read,
                                          {"relay_state_hash": hash_secret(request.form["RelayState"])}).one()
        data = sp.request_data(f"/sso/saml/{cid}/acs", post={"SAMLResponse": request.form["SAMLResponse"]})
        auth = OneLogin_Saml2_Auth(data, sp.saml_settings(conn))
        auth.process_response(request_id=stored.request_id)
        assert auth.is_authenticated(), auth.get_last_error_reason()
        if not in_one:
            db.session.execute(redemption.CONSUME_REQUEST, {"request_pk": stored.id},
                               execution_options={"synchronize_session": False})
        db.session.commit()
        session["signed_in"] = auth.get_nameid()
        return redirect("/library", 303)

    csrf.exempt(floor)


def seed(app, idp: TestIdp, members: int) -> str:
    from app.domains.service import add_domain
    from app.extensions import db
    from app.models import User
    from app.sso import connections
    from app.workspaces.service import create_workspace
    with app.app_context():
        workspace = create_workspace("Bench", "enterprise", "admin@bench.test", "bench-password-1")
        add_domain(workspace, "bench.test", verified=True)
        for i in range(members):
            user = User(workspace_id=workspace.id, name=f"Member {i}", role="creator")
            user.set_email(f"member{i}@bench.test")
            db.session.add(user)
        conn = connections.start_setup(workspace, "okta", actor=None)
        connections.configure_from_xml(workspace.id, idp.metadata(), actor=None)
        connections.enable(workspace.id, actor=None, override=True)
        db.session.commit()
        return conn.connection_id


def prepare(app, idp: TestIdp, cid: str, calls: int, members: Iterator[str]) -> list[tuple[str, str, str]]:
    """(request id, RelayState, base64 response) per call, each for the next of `members`."""
    client = app.test_client()
    entity_id, acs = f"http://bench.test/sso/saml/{cid}/metadata", f"http://bench.test/sso/saml/{cid}/acs"
    prepared = []
    for _ in range(calls):
        response = client.get(f"/sso/saml/{cid}/login", headers={"Sec-Fetch-Site": "same-origin"})  # /login's redirect
        assert response.status_code == 303, response.status_code
        authn, relay_state = read_authn_request(response.headers["Location"])
        signed = idp.response(audience=entity_id, acs_url=acs, in_response_to=authn.get("ID"), email=next(members))
        prepared.append((authn.get("ID"), relay_state, encode(signed)))
    return prepared


def post_environ(path: str, relay_state: str, posted: str) -> dict:
    """The browser's request and the server's parsing of HTTP are not the app's work: the
    environ is built before timing (a new browser each time: the IdP's POST carries no session)."""
    return EnvironBuilder(path=path, method="POST", content_type="application/x-www-form-urlencoded",
                          data=urlencode({"SAMLResponse": posted, "RelayState": relay_state}),
                          base_url="http://bench.test").get_environ()


def call(app, environ: dict) -> tuple[float, str, list]:
    status, headers = [], []
    started = time.perf_counter()
    body = app(environ, lambda s, h, exc_info=None: (status.append(s), headers.extend(h)))
    b"".join(body)
    body.close()
    return time.perf_counter() - started, status[0], headers


def run(app, cid: str, prepared, prepared_for_floor) -> dict[str, list[float]]:
    """Bare (both ways), floor and ACS timed call by call, interleaved, so all see the same machine load."""
    from app.sso import connections, sp
    with app.app_context(), app.test_request_context():
        settings = OneLogin_Saml2_Settings(sp.settings_dict(connections.by_connection_id(cid)),
                                           sp_validation_only=True)
        path = f"/sso/saml/{cid}/acs"
        requests = [sp.request_data(path, post={"SAMLResponse": posted}) for _, _, posted in prepared]
    samples: dict[str, list[float]] = {"bare, with the same caches (like for like)": [], "bare, as installed": [],
                                       "floor": [], "ACS": []}

    def bare(label: str, request_id: str, data: dict) -> None:
        started = time.perf_counter()
        auth = OneLogin_Saml2_Auth(data, settings)
        auth.process_response(request_id=request_id)
        samples[label].append(time.perf_counter() - started)
        assert auth.is_authenticated(), auth.get_last_error_reason()

    for (request_id, relay_state, posted), data, (_, floor_relay_state, floor_posted) in zip(
            prepared, requests, prepared_for_floor):
        install_library_caches(shipped=True)
        try:
            bare("bare, as installed", request_id, data)
        finally:
            install_library_caches()
        bare("bare, with the same caches (like for like)", request_id, data)

        took, status, headers = call(app, post_environ(f"/bench/floor/{cid}", floor_relay_state, floor_posted))
        samples["floor"].append(took)
        assert status.startswith("303") and ("Location", "/library") in headers, (status, headers)
        took, status, headers = call(app, post_environ(path, relay_state, posted))
        samples["ACS"].append(took)
        assert status.startswith("303") and ("Location", "/library") in headers, (status, headers)
    return samples


def ms(samples: list[float]) -> str:
    return f"mean {1000 * statistics.mean(samples):6.2f} ms   median {1000 * statistics.median(samples):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp(prefix="gatehouse-bench-acs-"))
    app = build_app(args.database_url or f"sqlite:///{instance / 'bench.db'}", instance)
    add_floor_view(app)
    idp = TestIdp(entity_id="https://idp.bench/metadata", sso_url="https://idp.bench/sso")
    # Every sign-in names a member none before it named, as at a company's start of day:
    # what the app memoizes per address (its syntax, its domain) is not reused across calls.
    warm_up = 20
    cid = seed(app, idp, members=2 * (warm_up + args.calls))
    members = (f"member{i}@bench.test" for i in count())
    run(app, cid, prepare(app, idp, cid, warm_up, members), prepare(app, idp, cid, warm_up, members))
    # The same responses for the bare calls (which consume nothing) and the ACS; the floor
    # consumes a request too, so it gets responses of its own.
    samples = run(app, cid, prepare(app, idp, cid, args.calls, members), prepare(app, idp, cid, args.calls, members))
    acs, floor = samples.pop("ACS"), samples.pop("floor")
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}, {args.calls} calls each")
    for label, bare in samples.items():
        print(f"python3-saml process_response ({label}):".ljust(78) + ms(bare))
    print("floor (read, validate, consume, commit, cookie) end to end:".ljust(78) + ms(floor))
    print("Gatehouse ACS end to end:".ljust(78) + ms(acs))
    for name, timed in (("ACS", acs), ("floor", floor)):
        for label, bare in samples.items():
            print(f"ratio {name} / {label}: {statistics.mean(timed) / statistics.mean(bare):.2f}x (mean), "
                  f"{statistics.median(timed) / statistics.median(bare):.2f}x (median)"
                  + ("; target <= 1.5x" if name == "ACS" else ""))
    print(f"ratio ACS / floor: {statistics.mean(acs) / statistics.mean(floor):.2f}x (mean), "
          f"{statistics.median(acs) / statistics.median(floor):.2f}x (median)")

if __name__ == "__main__":
    main()
