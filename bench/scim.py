"""SCIM benchmark (not a test): `python bench/scim.py [--sizes 1000 100000] [--database-url URL]`.

For each workspace size it seeds that many users, then measures, in process
(WSGI calls, no sockets, so only application cost is compared):

- `filter=userName eq` and GET by id (target: the largest size within 1.5x of the smallest);
- list paging (count=100 at random offsets, and the last page);
- create and PATCH throughput of Gatehouse's SCIM server, against
  * a bare Flask + SQLAlchemy handler doing the same insert/update on the same
    database with the same ORM pattern (add + commit; load + change + commit):
    the floor, target >= 0.6x its throughput; for PATCH also a single Core
    UPDATE that reads nothing (a floor below any handler that returns the resource), and
    PATCH authenticated the way Okta does after "Authenticate with Gatehouse" (an OAuth
    access token) besides the static SCIM token; and
  * scim2-server (the in-memory reference implementation, from its package).

Prints a table and the ratios; the figures in README come from here.
"""
from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask, jsonify, request  # noqa: E402
from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from werkzeug.test import Client  # noqa: E402

SCIM = "application/scim+json"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def timed(calls: int, fn) -> dict:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    total = sum(samples)
    samples.sort()
    return {"mean_ms": 1000 * total / calls, "p95_ms": 1000 * samples[int(0.95 * (calls - 1))],
            "per_s": calls / total}


def check(response, status: int | tuple):
    if response.status_code not in (status if isinstance(status, tuple) else (status,)):
        raise SystemExit(f"unexpected {response.status_code}: {response.get_data(as_text=True)[:300]}")
    return response


# --- Gatehouse --------------------------------------------------------------------------------------

def gatehouse_app(database_url: str, instance: Path, fresh: bool = True):
    from app import create_app
    from app.extensions import db
    app = create_app({
        "TESTING": False, "SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench", "BASE_URL": "http://bench",
        "REDIS_URL": "redis://127.0.0.1:1/0", "RATELIMIT_STORAGE_URI": "memory://", "MAIL_DIR": str(instance / "mail"),
        "RQ_ASYNC": False,
    })
    if fresh:
        with app.app_context():
            if database_url.startswith("postgresql"):
                db.drop_all()
            db.create_all()
    return app


def seed(app, size: int) -> tuple[str, str, list[int], list[str]]:
    """A workspace with `size` members (bulk insert), a static SCIM token and an OAuth
    access token (what Okta holds after "Authenticate with Gatehouse")."""
    from app.extensions import db
    from app.models import User, utcnow
    from app.scim.tokens import create_token
    from app.workspaces.service import create_workspace
    with app.app_context():
        workspace = create_workspace(f"Bench {size}", "enterprise", f"admin@bench{size}.test", "bench-password-1")
        db.session.commit()
        now = utcnow()
        rows = [{"workspace_id": workspace.id, "email": f"User{i}@Bench.test", "email_normalized": f"user{i}@bench.test",
                 "name": f"User {i}", "given_name": "User", "family_name": str(i), "role": "creator",
                 "status": "active", "source": "scim", "external_id": f"ext-{i}", "session_version": 1,
                 "created_at": now, "updated_at": now} for i in range(size - 1)]
        for chunk in range(0, len(rows), 5000):
            db.session.execute(insert(User), rows[chunk:chunk + 5000])
        _, token = create_token(workspace, "bench", actor=None)
        access_token = oauth_token(workspace, size)
        db.session.commit()
        ids = list(db.session.scalars(select(User.id).where(User.workspace_id == workspace.id)))
        emails = [r["email_normalized"] for r in rows]
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        return token, access_token, ids, emails


def oauth_token(workspace, size: int) -> str:
    """An access token issued to a registered client, stored as the OAuth flow stores it."""
    from app.extensions import db
    from app.oauth import clients, service
    client = clients.client_by_name("okta")
    if client is None:
        client, _ = clients.create_client("okta", ["https://bench.okta.test/oauth2/v1/authorize/callback"])
        db.session.flush()
    access_token = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    service.save_token({"access_token": access_token, "refresh_token": secrets.token_urlsafe(32),
                        "expires_in": 3600, "scope": "scim offline_access"}, client=client,
                       workspace_id=workspace.id, approved_by_id=None, approved_by_label=f"admin@bench{size}.test",
                       authorization_code_id=None, rotated_from=None)
    return access_token


# --- the bare floor ---------------------------------------------------------------------------------

def bare_app(database_url: str, workspace_id: int) -> Flask:
    """The same insert/update with nothing else: no auth, validation, audit or log."""
    from app.models import User, utcnow
    engine = create_engine(database_url)
    app = Flask("bare")

    @app.post("/bare/Users")
    def create():
        body = request.get_json(force=True)
        with Session(engine) as session:
            user = User(workspace_id=workspace_id, email=body["userName"], email_normalized=body["userName"].lower(),
                        name=body.get("displayName", ""), role="creator", status="active", source="scim")
            session.add(user)
            session.commit()
            return jsonify({"id": str(user.id), "userName": user.email}), 201

    @app.get("/bare/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.patch("/bare/Users/<int:user_id>")
    def patch(user_id: int):
        """The same ORM pattern as the app's update: load the row, change it, commit."""
        body = request.get_json(force=True)
        with Session(engine, expire_on_commit=False) as session:
            user = session.get(User, user_id)
            user.name = body["Operations"][0]["value"]
            session.commit()
            return jsonify({"id": str(user.id), "userName": user.email, "displayName": user.name}), 200

    @app.patch("/bare/update/<int:user_id>")
    def single_update(user_id: int):
        """The thinnest possible floor: one UPDATE statement, nothing read."""
        body = request.get_json(force=True)
        with Session(engine) as session:
            session.execute(update(User).where(User.id == user_id)
                            .values(name=body["Operations"][0]["value"], updated_at=utcnow()))
            session.commit()
            return jsonify({"id": str(user_id)}), 200

    return app


# --- scim2-server -----------------------------------------------------------------------------------

def reference_app(token: str):
    from scim2_models import ScimProvider
    from scim2_server.memory import InMemoryStorage
    from scim2_server.service import ScimService
    from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
    from scim2_server.utils import (load_default_resource_types, load_default_schemas,
                                    load_default_service_provider_config)
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(load_default_schemas().values(), load_default_resource_types().values(),
                                           config=config)
    return BearerTokenApplication(InMemoryStorage(), provider, service=ScimService(provider), bearer_tokens=[token])


# --- the run ----------------------------------------------------------------------------------------

def user_body(email: str) -> dict:
    return {"schemas": [CORE_USER], "userName": email, "displayName": "Bench User", "active": True,
            "name": {"givenName": "Bench", "familyName": "User"},
            "emails": [{"value": email, "type": "work", "primary": True}]}


def combine(parts: list[dict], calls_per_part: int) -> dict:
    total = sum(calls_per_part / p["per_s"] for p in parts)
    n = calls_per_part * len(parts)
    return {"mean_ms": 1000 * total / n, "p95_ms": statistics.median(p["p95_ms"] for p in parts), "per_s": n / total}


class Setup:
    """One seeded workspace of `size` members and the clients that talk to it."""

    def __init__(self, size: int, database_url: str | None, instance: Path, fresh: bool):
        self.size = size
        self.url = database_url or f"sqlite:///{instance / f'bench-{size}.db'}"
        self.app = gatehouse_app(self.url, instance, fresh)
        self.token, self.access_token, self.ids, self.emails = seed(self.app, size)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.client = Client(self.app)
        self.rng = random.Random(size)
        self.get("/scim/v2/Users?count=1")  # warm up

    def get(self, path):
        return check(self.client.get(path, headers=self.auth), 200)

    def reads(self) -> dict:
        rng, size = self.rng, self.size
        return {
            "filter_eq": lambda i: self.get(
                f'/scim/v2/Users?filter=userName%20eq%20%22{rng.choice(self.emails).upper()}%22'),
            "get_by_id": lambda i: self.get(f"/scim/v2/Users/{rng.choice(self.ids)}"),
            "list_page": lambda i: self.get(f"/scim/v2/Users?startIndex={rng.randrange(1, max(size - 100, 2))}&count=100"),
            "last_page": lambda i: self.get(f"/scim/v2/Users?startIndex={size - 99}&count=100"),
        }


def measure_reads(setups: list[Setup], calls: int) -> dict[int, dict]:
    """Every size in the same rounds, so a busy moment on the machine hits all sizes alike."""
    rounds, out = 10, {s.size: {} for s in setups}
    per_round = {"filter_eq": max(calls // rounds, 1), "get_by_id": max(calls // rounds, 1),
                 "list_page": max(calls // (3 * rounds), 1), "last_page": 1}
    parts = {(s.size, key): [] for s in setups for key in per_round}
    for _ in range(rounds):
        for setup in setups:
            for key, fn in setup.reads().items():
                parts[(setup.size, key)].append(timed(per_round[key], fn))
    for (size, key), samples in parts.items():
        out[size][key] = combine(samples, per_round[key])
    return out


def measure_writes(setup: Setup, calls: int) -> dict:
    app, url, token, ids, rng, size = setup.app, setup.url, setup.token, setup.ids, setup.rng, setup.size
    client, auth, out = setup.client, setup.auth, {}
    run = secrets.token_hex(3)
    with app.app_context():
        from app.extensions import db
        from app.models import Workspace
        workspace_id = db.session.scalar(select(Workspace.id).where(Workspace.name == f"Bench {size}"))
    bare = Client(bare_app(url, workspace_id))
    reference = Client(reference_app(token))
    ref_ids: list[str] = []
    json_headers = {**auth, "Content-Type": SCIM}

    def scim_patch(name, headers=json_headers):
        return lambda i: check(client.patch(f"/scim/v2/Users/{rng.choice(ids)}", headers=headers, data=json.dumps(
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": f"{name} {i}"}]})),
            200)

    def ref_create(i):
        response = check(reference.post("/v2/Users", data=json.dumps(user_body(f"ref{i}-{run}@bench.test")),
                                         headers=json_headers), 201)
        ref_ids.append(json.loads(response.get_data())["id"])

    contenders = {
        "create": lambda i: check(client.post("/scim/v2/Users", data=json.dumps(user_body(f"new{i}-{run}@bench.test")),
                                              headers=json_headers), 201),
        "bare_create": lambda i: check(bare.post("/bare/Users", data=json.dumps(user_body(f"bare{i}-{run}@bench.test")),
                                                 headers={"Content-Type": "application/json"}), 201),
        "ref_create": ref_create,
        "patch": scim_patch("Renamed"),
        "oauth_patch": scim_patch("Okta", {"Authorization": f"Bearer {setup.access_token}", "Content-Type": SCIM}),
        "bare_patch": lambda i: check(bare.patch(f"/bare/Users/{rng.choice(ids)}", data=json.dumps(
            {"Operations": [{"value": f"Bare {i}"}]}), headers={"Content-Type": "application/json"}), 200),
        "bare_update": lambda i: check(bare.patch(f"/bare/update/{rng.choice(ids)}", data=json.dumps(
            {"Operations": [{"value": f"Bare {i}"}]}), headers={"Content-Type": "application/json"}), 200),
        "ref_patch": lambda i: check(reference.patch(f"/v2/Users/{rng.choice(ref_ids)}", headers=json_headers,
                                                     data=json.dumps({"schemas": [PATCH], "Operations": [
                                                         {"op": "replace", "path": "displayName",
                                                          "value": f"Ref {i}"}]})), (200, 204)),
    }
    # The framework floor: the same no-op view in the full app (every area's hooks) and in bare Flask.
    contenders["noop"] = lambda i: check(client.get("/healthz"), 200)
    contenders["bare_noop"] = lambda i: check(bare.get("/bare/healthz"), 200)
    # Interleaved rounds, so a busy moment on the machine hits every contender alike.
    rounds, per_round, samples = 10, max(calls // 10, 1), {key: [] for key in contenders}
    for round_no in range(rounds):
        for key in contenders:
            offset = round_no * per_round
            samples[key].append(timed(per_round, lambda i, fn=contenders[key]: fn(offset + i)))
    for key, parts in samples.items():
        out[key] = combine(parts, per_round)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--database-url", help="default: a fresh SQLite file per size")
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    try:
        # SQLite: a file per size. A database server: sizes share it, each in its own workspace.
        setups = [Setup(size, args.database_url, instance, fresh=index == 0 or not args.database_url)
                  for index, size in enumerate(args.sizes)]
        reads = measure_reads(setups, args.calls)
        results = [{"size": s.size, **reads[s.size], **measure_writes(s, args.calls)} for s in setups]
    finally:
        shutil.rmtree(instance, ignore_errors=True)
    report(results)


def report(results: list[dict]) -> None:
    keys = ["filter_eq", "get_by_id", "list_page", "last_page", "create", "bare_create", "ref_create", "patch",
            "oauth_patch", "bare_patch", "bare_update", "ref_patch", "noop", "bare_noop"]
    print(f"{'metric':<12}" + "".join(f"{'n=' + str(r['size']):>28}" for r in results))
    for key in keys:
        cells = "".join(f"{r[key]['mean_ms']:>9.2f} ms p95 {r[key]['p95_ms']:>6.2f} {r[key]['per_s']:>5.0f}/s"
                        for r in results)
        print(f"{key:<12}{cells}")
    small, large = results[0], results[-1]
    print()
    for key, target in (("filter_eq", " (target <= 1.5x)"), ("get_by_id", " (target <= 1.5x)"), ("list_page", "")):
        print(f"{key}: n={large['size']} / n={small['size']} latency = "
              f"{large[key]['mean_ms'] / small[key]['mean_ms']:.2f}x{target}")
    for r in results:
        for op in ("create", "patch"):
            print(f"n={r['size']} {op}: Gatehouse / bare Flask+SQLAlchemy = {r[op]['per_s'] / r['bare_' + op]['per_s']:.2f}x"
                  f" (target >= 0.6x); Gatehouse / scim2-server = {r[op]['per_s'] / r['ref_' + op]['per_s']:.2f}x")
        print(f"n={r['size']} patch with an OAuth access token (Okta's way): Gatehouse / bare Flask+SQLAlchemy = "
              f"{r['oauth_patch']['per_s'] / r['bare_patch']['per_s']:.2f}x (target >= 0.6x)")
        print(f"n={r['size']} patch: Gatehouse / a single Core UPDATE = {r['patch']['per_s'] / r['bare_update']['per_s']:.2f}x")


if __name__ == "__main__":
    main()
