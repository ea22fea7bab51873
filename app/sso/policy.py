"""Enforcement: who must sign in through SSO, who is blocked, and where
/login sends an email (home realm discovery). Registered with app.auth."""
from __future__ import annotations

from sqlalchemy import ColumnElement, and_, bindparam, select

from app.auth.policy import SignInMethod
from app.domains.service import (email_authorized, email_domains_of, verified_domain_covering,
                                 workspace_id_for_email_domain)
from app.extensions import db
from app.models import SsoConnection, User
from app.models.sso import ConnectionState


def domain_authorized(workspace_id: int, email: str) -> bool:
    """Is the email's domain verified for this workspace? (the domains area owns the rule)"""
    return verified_domain_covering(workspace_id, email) is not None


def _is_authorized_member(workspace_id) -> ColumnElement[bool]:
    """The member with the email bound by `member_parameters`, only if their domain is
    authorized for the workspace (`workspace_id`: a column or a bind parameter)."""
    return and_(User.workspace_id == workspace_id, User.email_normalized == bindparam("email"),
                email_authorized(workspace_id))


_AUTHORIZED_MEMBER = select(User).where(_is_authorized_member(bindparam("workspace_id")))
# The same rule, for the SSO sign-in's first read, which joins the member to the connection
# it has just found (app.sso.saml): one round trip fewer on every sign-in.
IS_AUTHORIZED_MEMBER_OF_CONNECTION = _is_authorized_member(SsoConnection.workspace_id)


def member_parameters(email: str | None) -> dict:
    """The parameters of both statements; an email of None matches nobody."""
    return {"email": User.normalize_email(email) if email else None,
            "email_domains": email_domains_of(email) if email else []}


def authorized_member(workspace_id: int, email: str) -> User | None:
    """The member with this email, only if their domain is authorized: one query
    for the common case of an SSO sign-in (None says neither which part failed)."""
    return db.session.scalar(_AUTHORIZED_MEMBER, {"workspace_id": workspace_id, **member_parameters(email)})


def enforced_connection(workspace_id: int) -> SsoConnection | None:
    return db.session.scalar(select(SsoConnection).where(
        SsoConnection.workspace_id == workspace_id, SsoConnection.is_staged.is_(False),
        SsoConnection.state == ConnectionState.on.value))


def sso_policy(user: User) -> SignInMethod | None:
    """With SSO on: members on an authorized domain must use SSO, others are
    blocked (admins keep their break-glass recovery codes: app.sso.recovery)."""
    if enforced_connection(user.workspace_id) is None:
        return None
    return SignInMethod.sso if domain_authorized(user.workspace_id, user.email) else SignInMethod.blocked


def home_realm(email: str) -> tuple[str, int] | None:
    """An email on a domain verified by a workspace with SSO on: that workspace's SSO start
    and its id (the auth area decides whether /login goes there straight away)."""
    workspace_id = workspace_id_for_email_domain(email)
    if workspace_id is None:
        return None
    conn = enforced_connection(workspace_id)
    if conn is None:
        return None
    return f"/sso/saml/{conn.connection_id}/login", workspace_id
