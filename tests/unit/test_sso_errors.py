"""Typed SAML errors: policy refusals are 403, broken responses 400, every code explained."""
from __future__ import annotations

import pytest

from app.sso.errors import POLICY_CODES, SamlError, SamlErrorCode, describe


@pytest.mark.parametrize("code", list(SamlErrorCode))
def test_every_code_has_a_title_a_member_message_and_a_fix(code):
    err = SamlError(code)
    assert err.title and err.member_message.endswith(".") and err.fix
    assert err.status == (403 if code in POLICY_CODES else 400)
    assert describe(code.value) == (err.title, err.fix)


def test_policy_refusals_are_the_ones_design_lists():
    assert {c.value for c in POLICY_CODES} == {"domain_not_authorized", "user_unknown", "user_deactivated"}


def test_an_unknown_stored_code_reads_as_generic():
    assert describe("no_such_code") == describe("invalid_response")
