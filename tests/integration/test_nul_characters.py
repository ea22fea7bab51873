"""A NUL character anywhere a person or a client can put text: a clear 400 in the area's own
format, never the 500 PostgreSQL's "can't store NUL" would otherwise become, and nothing written."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import User
from tests.integration.scim_helpers import assert_scim_error, scim  # noqa: F401 (fixture)

pytestmark = pytest.mark.postgres

NUL_MESSAGE = "contains a NUL character"


@pytest.mark.parametrize("method, url, data", [
    ("post", "/login", {"email": "a\x00@acme.test"}),
    ("post", "/login/password", {"email": "admin@acme.test\x00", "password": "x"}),
    ("post", "/sso/recovery", {"email": "admin@acme.test\x00", "password": "x", "code": "abcd-efgh-jkmn"}),
    ("post", "/password/forgot", {"email": "a\x00b@acme.test"}),
    ("get", "/login?next=/library%00", None),
])
def test_public_forms_and_queries(client, admin, method, url, data):
    response = getattr(client, method)(url, data=data)
    assert response.status_code == 400 and NUL_MESSAGE in response.get_data(as_text=True)


def test_admin_pages(admin_client, workspace):
    for response in (admin_client.get("/settings/members?q=a%00b"),
                     admin_client.post("/settings/members/invite", data={"email": "x\x00@acme.test", "role": "creator"})):
        assert response.status_code == 400 and NUL_MESSAGE in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_an_invitation_name(app, admin_client, workspace):
    import re
    from app.models import OutboundEmail
    admin_client.post("/settings/members/invite", data={"email": "dave@acme.test", "role": "creator"})
    body = db.session.scalar(select(OutboundEmail.body_text).where(OutboundEmail.to == "dave@acme.test"))
    link = re.search(r"/invitations/[A-Za-z0-9_\-]+", body).group(0)
    response = app.test_client().post(link, data={"name": "Da\x00ve", "password": "a long new passphrase 1",
                                                  "confirm": "a long new passphrase 1"})
    assert response.status_code == 400
    assert db.session.scalar(select(User.status).where(User.email_normalized == "dave@acme.test")) == "invited"


def test_scim_answers_in_its_own_terms(scim):
    """The SCIM API checks NULs itself (test_scim_users has the JSON cases), so a query gets
    SCIM's error type rather than the pages' generic 400."""
    response = scim.get('/Users?filter=userName eq "a%00b@acme.test"')
    assert_scim_error(response, 400, "invalidFilter")


@pytest.mark.parametrize("resource, filter_", [
    ("Users", 'userName eq "a\\u0000b@acme.test"'),
    ("Users", 'userName sw "a\\u0000"'),
    ("Users", 'externalId eq "a\\u0000b"'),
    ("Users", 'name.givenName eq "A\\u0000da"'),
    ("Users", 'emails[value co "\\u0000"]'),
    ("Users", 'active eq true and displayName ew "\\u0000"'),
    ("Groups", 'displayName eq "Eng\\u0000"'),
])
def test_a_nul_escape_in_a_filter_value_is_an_invalid_filter(scim, resource, filter_):
    """The parser turns \\u0000 into a NUL, which PostgreSQL can't compare: refused as the client's
    mistake, never the 503 "retry" a database error would become (an IdP would retry it forever)."""
    response = scim.get(f"/{resource}", query_string={"filter": filter_})
    body = assert_scim_error(response, 400, "invalidFilter")
    assert "NUL" in body["detail"]


def test_a_signed_in_page_is_still_fine_without_one(admin_client):
    assert admin_client.get("/settings/members?q=ada").status_code == 200
