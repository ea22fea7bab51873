"""Security headers on every response, friendly errors, health checks, the audit log."""
from __future__ import annotations

import pytest

from app.audit.service import record
from app.extensions import db
from tests.conftest import sign_in


def test_every_response_has_the_security_headers(client, admin):
    for response in (client.get("/login"), client.get("/nope"), client.get("/healthz"),
                     client.get("/static/css/app.css")):
        headers = response.headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_pages_have_no_inline_scripts_or_styles(client, admin):
    sign_in(client, admin.email)
    for path in ("/library", "/settings/security", "/settings/members", "/settings/audit"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and "style=" not in html and "<style" not in html and " on" + "click" not in html
        assert '<script src="/static/vendor/htmx-2.0.11.min.js" defer></script>' in html


def test_friendly_error_pages(client):
    not_found = client.get("/no/such/page")
    assert not_found.status_code == 404 and "Page not found" in not_found.get_data(as_text=True)
    not_allowed = client.delete("/login")
    assert not_allowed.status_code == 405 and "Not allowed" in not_allowed.get_data(as_text=True)
    assert "GET" in not_allowed.headers["Allow"]
    too_big = client.post("/login", data={"email": "x" * (3 * 1024 * 1024)})
    assert too_big.status_code == 413 and "larger than we accept" in too_big.get_data(as_text=True)


def test_htmx_errors_are_fragments(client):
    response = client.get("/no/such/page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert body.startswith('<div class="flash flash-error"') and "<html" not in body
    assert response.headers["HX-Retarget"] == "#flash"


def test_a_refused_poll_reloads_the_page(client):
    """An element polling on its own (`poll=1`) would get the same refusal every few seconds:
    htmx reloads the page instead, which then says what changed."""
    response = client.get("/no/such/page?poll=1", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Refresh"] == "true" and "HX-Retarget" not in response.headers


def test_an_unexpected_error_is_a_500_page_not_a_traceback(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body and "secret internals" not in body


@pytest.mark.postgres
def test_a_database_error_is_a_500_page_too(app, client, admin):
    """After a failed statement PostgreSQL refuses every other one in the transaction, until a
    rollback: the error page, which may load the signed-in member's workspace, gets one first.
    (A failure inside a commit's psycopg pipeline, app/deferred_writes.py, leaves it so.)"""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom-in-the-database")
    def boom_in_the_database():
        from flask_login import current_user
        db.session.expunge(current_user.workspace)  # the page's header shows its name: loaded there
        db.session.expire(current_user, ["workspace"])
        db.session.connection().connection.driver_connection.execute("SELECT 1 / 0")

    sign_in(client, admin.email)
    response = client.get("/boom-in-the-database")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body and "Acme" in body and "division by zero" not in body


def test_health_and_readiness(app, client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"database": "ok", "redis": "ok"}


def test_readiness_names_the_failing_part(app, client):
    import redis
    app.extensions["redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "ok" and body["redis"].startswith("error: ")


def test_audit_log_is_newest_first_paginated_and_filterable(client, workspace, admin):
    for n in range(60):
        record(workspace.id, "member.role_changed", actor=admin, target=admin, n=n)
    record(workspace.id, "domain.added", actor=admin, target_label="example.com")
    db.session.commit()
    sign_in(client, admin.email)
    first = client.get("/settings/audit").get_data(as_text=True)
    assert first.index("domain.added") < first.index("member.role_changed")
    assert "Page 1 of 2" in first
    second = client.get("/settings/audit?page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second
    only = client.get("/settings/audit?kind=domain").get_data(as_text=True)
    assert "domain.added" in only and "member.role_changed" not in only
    fragment = client.get("/settings/audit?kind=member", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('<div id="audit-events">')
    assert client.get("/settings/audit?page=-5&kind=" + "k" * 500).status_code == 200


def test_a_non_enterprise_workspace_sees_the_plan_gate(client, make_workspace):
    make_workspace("Small", plan="business", admin_email="owner@small.test")
    sign_in(client, "owner@small.test")
    page = client.get("/settings/security").get_data(as_text=True)
    assert "Security features need the Enterprise plan" in page
    assert "Small is on the <strong>Business</strong> plan" in page
    for feature in ("Single sign-on (SAML)", "Authorized domains", "Provisioning (SCIM)"):
        assert feature in page


@pytest.mark.postgres
@pytest.mark.parametrize("number", ["99999999999999999999999", "9223372036854775808", "0"])
def test_an_id_past_any_row_is_404_on_every_admin_route(db_backend, app, admin_client, number):
    """Every /settings route that takes a numeric id, GET and POST: a number too large for the
    database to bind (or 0) is "not found", never a 500."""
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/settings/") and "<int:" in r.rule]
    assert len(rules) >= 10
    for rule in rules:
        url = rule.rule.split("<int:")[0] + number + rule.rule.split(">", 1)[1]
        for method in sorted(rule.methods & {"GET", "POST"}):
            # A valid form where one is needed (a role change checks its form first).
            response = admin_client.open(url, method=method, data={"role": "creator"} if method == "POST" else None)
            assert response.status_code == 404, (method, url, response.status_code)
