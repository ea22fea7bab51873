"""SSO test helpers: a workspace with a real SAML connection to a TestIdp, and
a driver that walks the real endpoints (login → IdP redirect → ACS POST)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.extensions import db
from tests.support.saml_idp import TestIdp, encode, read_authn_request


@dataclass
class Started:
    request_id: str
    relay_state: str
    redirect_url: str


@dataclass
class SsoHarness:
    workspace: object
    idp: TestIdp
    connection_id: str
    base_url: str = "http://localhost"

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/sso/saml/{self.connection_id}/metadata"

    @property
    def acs_path(self) -> str:
        return f"/sso/saml/{self.connection_id}/acs"

    @property
    def acs_url(self) -> str:
        return self.base_url + self.acs_path

    @property
    def login_path(self) -> str:
        return f"/sso/saml/{self.connection_id}/login"

    def start(self, client, path: str | None = None, **kw) -> Started:
        """As /login's redirect starts it: a same-origin navigation (others are confirmed first)."""
        kw["headers"] = {"Sec-Fetch-Site": "same-origin", **kw.get("headers", {})}
        response = client.get(path or self.login_path, **kw)
        assert response.status_code == 303, response.get_data(as_text=True)[:500]
        return self.started_from(response.headers["Location"])

    def started_from(self, location: str) -> Started:
        assert location.startswith(self.idp.sso_url), location
        request, relay_state = read_authn_request(location)
        return Started(request.get("ID"), relay_state, location)

    def response(self, in_response_to: str | None, email: str, **kw):
        kw.setdefault("audience", self.entity_id)
        kw.setdefault("acs_url", self.acs_url)
        return self.idp.response(in_response_to=in_response_to, email=email, **kw)

    def post(self, client, root_or_b64, relay_state: str | None, **kw):
        data = {"SAMLResponse": root_or_b64 if isinstance(root_or_b64, str) else encode(root_or_b64)}
        if relay_state is not None:
            data["RelayState"] = relay_state
        return client.post(self.acs_path, data=data, **kw)

    def sign_in(self, client, email: str, **kw):
        started = self.start(client)
        return self.post(client, self.response(started.request_id, email, **kw), started.relay_state)


def setup_sso(workspace, idp: TestIdp, *, domain: str = "acme.test", enable: bool = True, base_url: str =
              "http://localhost") -> SsoHarness:
    from app.domains.service import add_domain
    from app.sso import connections
    if domain:
        add_domain(workspace, domain, verified=True)
    conn = connections.start_setup(workspace, "okta", actor=None)
    connections.configure_from_xml(workspace.id, idp.metadata(), actor=None, source="metadata")
    if enable:
        connections.enable(workspace.id, actor=None, override=True)
    db.session.commit()
    return SsoHarness(workspace, idp, conn.connection_id, base_url)


def last_log(workspace_id: int):
    from sqlalchemy import select
    from app.models import SamlLoginLog
    return db.session.scalar(select(SamlLoginLog).where(SamlLoginLog.workspace_id == workspace_id)
                             .order_by(SamlLoginLog.id.desc()).limit(1))


def signed_in_email(client) -> str | None:
    page = client.get("/library")
    if page.status_code != 200:
        return None
    import re
    found = re.search(r'<div class="muted small">([^ <]+) ·', page.get_data(as_text=True))
    return found.group(1) if found else None


@pytest.fixture
def idp():
    return TestIdp()


@pytest.fixture
def sso(app, workspace, idp):
    """Acme with acme.test verified and SSO on through `idp`."""
    return setup_sso(workspace, idp)
