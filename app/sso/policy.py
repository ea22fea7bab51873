"""Enforcement: who must sign in through SSO, who is blocked, and where
/login sends an email (home realm discovery). Registered with app.auth."""
from __future__ import annotations

from sqlalchemy import select

from app.auth.policy import SignInMethod
from app.domains.service import verified_domain_covering, workspace_id_for_email_domain
from app.extensions import db
from app.models import SsoConnection, User
from app.models.sso import ConnectionState


def domain_authorized(workspace_id: int, email: str) -> bool:
    """Is the email's domain verified for this workspace? (the domains area owns the rule)"""
    return verified_domain_covering(workspace_id, email) is not None


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


def home_realm(email: str) -> str | None:
    """/login step 1: an email on a domain verified by a workspace with SSO on
    goes straight to that workspace's IdP."""
    workspace_id = workspace_id_for_email_domain(email)
    if workspace_id is None:
        return None
    conn = enforced_connection(workspace_id)
    if conn is None:
        return None
    return f"/sso/saml/{conn.connection_id}/login"
