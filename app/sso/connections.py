"""SSO connections: create, configure (metadata, upload, manual), stage edits of
a live connection as a draft, test, promote, turn on and off.

States (DESIGN.md): draft → tested (a successful test login) → on. Editing a
connection that is tested or on makes a staged draft sharing its Connection
ID; that draft replaces the live configuration only after its own successful
test, so members are never locked out while switching.
"""
from __future__ import annotations

import secrets
import string

from sqlalchemy import select

from app.audit.service import record
from app.extensions import db
from app.scoping import scoped
from app.models import Role, SsoCertificate, SsoConnection, User, UserStatus, Workspace, utcnow
from app.models.sso import ConnectionState, IdpKind
from app.sso.metadata import CertificateInfo, IdpConfig, MetadataError, parse_metadata, read_certificate


class ConnectionError_(ValueError):
    """A change to a connection that isn't allowed now; the message says why."""


def new_connection_id() -> str:
    """`1234-abcde1234`: 4 digits, a dash, 5 lowercase letters, 4 digits; unique."""
    for _ in range(20):
        cid = ("".join(secrets.choice(string.digits) for _ in range(4)) + "-"
               + "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))
               + "".join(secrets.choice(string.digits) for _ in range(4)))
        if db.session.scalar(select(SsoConnection.id).where(SsoConnection.connection_id == cid)) is None:
            return cid
    raise RuntimeError("could not find a free Connection ID")


def live_connection(workspace_id: int) -> SsoConnection | None:
    return db.session.scalar(scoped(SsoConnection, workspace_id).where(SsoConnection.is_staged.is_(False)))


def staged_connection(workspace_id: int) -> SsoConnection | None:
    return db.session.scalar(scoped(SsoConnection, workspace_id).where(SsoConnection.is_staged.is_(True)))


def by_connection_id(connection_id: str) -> SsoConnection | None:
    """The live connection behind a URL's Connection ID."""
    return db.session.scalar(select(SsoConnection).where(SsoConnection.connection_id == connection_id,
                                                         SsoConnection.is_staged.is_(False)))


def start_setup(workspace: Workspace, idp_kind: str, *, actor: User | None) -> SsoConnection:
    """The workspace's connection, created on first use; picking another IdP on a
    tested/on connection stages the change."""
    IdpKind(idp_kind)
    conn = live_connection(workspace.id)
    if conn is None:
        conn = SsoConnection(workspace_id=workspace.id, connection_id=new_connection_id(), idp_kind=idp_kind,
                             state=ConnectionState.draft.value, jit_role=workspace.default_role)
        db.session.add(conn)
        db.session.flush()
        record(workspace.id, "sso.connection_created", actor=actor, target=conn, idp=idp_kind,
               connection_id=conn.connection_id)
        return conn
    target = editable_connection(workspace.id, actor=actor)
    if target.idp_kind != idp_kind:
        record(workspace.id, "sso.idp_changed", actor=actor, target=target, before=target.idp_kind, after=idp_kind)
        target.idp_kind = idp_kind
    return target


def editable_connection(workspace_id: int, *, actor: User | None) -> SsoConnection:
    """Where an edit goes: the live connection while it is a draft, otherwise a
    staged draft (created as a copy of the live one)."""
    live = live_connection(workspace_id)
    if live is None:
        raise ConnectionError_("Start SSO setup first: pick your identity provider.")
    if live.state == ConnectionState.draft.value:
        return live
    staged = staged_connection(workspace_id)
    if staged is None:
        staged = SsoConnection(workspace_id=workspace_id, connection_id=live.connection_id, is_staged=True,
                               idp_kind=live.idp_kind, idp_entity_id=live.idp_entity_id, sso_url=live.sso_url,
                               metadata_url=live.metadata_url, metadata_xml=live.metadata_xml,
                               metadata_status=live.metadata_status, metadata_error=live.metadata_error,
                               metadata_fetched_at=live.metadata_fetched_at, state=ConnectionState.draft.value,
                               jit_enabled=live.jit_enabled, jit_role=live.jit_role)
        staged.certificates = [_copy_cert(c, workspace_id) for c in live.certificates]
        db.session.add(staged)
        db.session.flush()
        record(workspace_id, "sso.draft_created", actor=actor, target=staged, connection_id=live.connection_id)
    return staged


def _copy_cert(cert: SsoCertificate, workspace_id: int) -> SsoCertificate:
    return SsoCertificate(workspace_id=workspace_id, pem=cert.pem, fingerprint=cert.fingerprint,
                          subject=cert.subject, not_before=cert.not_before, not_after=cert.not_after,
                          source=cert.source, expiry_warned_at=cert.expiry_warned_at)


def _cert_row(info: CertificateInfo, workspace_id: int, source: str) -> SsoCertificate:
    return SsoCertificate(workspace_id=workspace_id, pem=info.pem, fingerprint=info.fingerprint,
                          subject=info.subject, not_before=info.not_before, not_after=info.not_after, source=source)


def apply_idp_config(conn: SsoConnection, config: IdpConfig, *, source: str, actor: User | None) -> list[str]:
    """Take the entity id, SSO URL and certificates from metadata; returns what
    changed (for the audit log and the metadata refresh job)."""
    changes = []
    if conn.idp_entity_id != config.entity_id:
        changes.append(f"entity id {conn.idp_entity_id or '(none)'} → {config.entity_id}")
        conn.idp_entity_id = config.entity_id[:1024]
    if conn.sso_url != config.sso_url:
        changes.append(f"SSO URL {conn.sso_url or '(none)'} → {config.sso_url}")
        conn.sso_url = config.sso_url[:2048]
    new = {c.fingerprint: c for c in config.certificates}
    for cert in list(conn.certificates):
        if cert.fingerprint not in new:
            changes.append(f"certificate removed {cert.fingerprint}")
            conn.certificates.remove(cert)
    have = {c.fingerprint for c in conn.certificates}
    for fp, info in new.items():
        if fp not in have:
            changes.append(f"certificate added {fp}")
            conn.certificates.append(_cert_row(info, conn.workspace_id, source))
    from app.sso.sp import settings_problem
    problem = settings_problem(conn)
    if problem:
        raise MetadataError(problem)
    if changes:
        conn.updated_at = utcnow()
        record(conn.workspace_id, "sso.idp_configured", actor=actor, target=conn, source=source, changes=changes)
    return changes


def configure_from_xml(workspace_id: int, xml: str | bytes, *, actor: User | None, source: str = "upload"
                       ) -> SsoConnection:
    config = parse_metadata(xml)  # raises MetadataError before anything changes
    conn = editable_connection(workspace_id, actor=actor)
    conn.metadata_xml = xml.decode("utf-8", "replace") if isinstance(xml, bytes) else xml
    if source == "upload":
        conn.metadata_url = None
        conn.metadata_status = None
    apply_idp_config(conn, config, source=source, actor=actor)
    return conn


def configure_manually(workspace_id: int, *, entity_id: str, sso_url: str, certificate_pem: str,
                       actor: User | None) -> SsoConnection:
    info = read_certificate(certificate_pem)
    conn = editable_connection(workspace_id, actor=actor)
    conn.metadata_url = None
    conn.metadata_status = None
    certs = [info] + [CertificateInfo(c.pem, c.fingerprint, c.subject, c.not_before, c.not_after)
                      for c in conn.certificates if c.fingerprint != info.fingerprint]
    apply_idp_config(conn, IdpConfig(entity_id.strip(), sso_url.strip(), certs), source="manual", actor=actor)
    return conn


def set_metadata_url(workspace_id: int, url: str, *, actor: User | None) -> SsoConnection:
    """Record the URL; the fetch runs as a job (jobs.sso.fetch_connection_metadata). Until it
    has delivered, the connection can't be tested (metadata_url_unproven)."""
    conn = editable_connection(workspace_id, actor=actor)
    conn.metadata_url = url.strip()
    conn.metadata_status = "pending"
    conn.metadata_error = None
    conn.metadata_fetched_at = None
    record(workspace_id, "sso.metadata_url_set", actor=actor, target=conn, url=conn.metadata_url)
    return conn


def untested_metadata_message(conn: SsoConnection) -> str:
    """Why a connection whose metadata URL hasn't delivered can't be tested, and what to do."""
    if conn.metadata_status == "failed":
        return ("The metadata URL hasn't delivered your IdP's metadata yet (see step 3), so a test couldn't test "
                "what it will bring. Fix the URL, or upload the metadata XML, then test.")
    return ("Gatehouse is still fetching your IdP's metadata from the URL you gave. Test once it has arrived; "
            "this page updates by itself.")


def add_certificate(workspace_id: int, pem: str, *, actor: User | None) -> SsoCertificate:
    info = read_certificate(pem)
    conn = editable_connection(workspace_id, actor=actor)
    if any(c.fingerprint == info.fingerprint for c in conn.certificates):
        raise MetadataError("This certificate is already on the connection.")
    cert = _cert_row(info, workspace_id, "upload")
    conn.certificates.append(cert)
    conn.updated_at = utcnow()
    record(workspace_id, "sso.certificate_added", actor=actor, target=conn, fingerprint=info.fingerprint,
           not_after=info.not_after.isoformat())
    return cert


def remove_certificate(workspace_id: int, fingerprint: str, *, actor: User | None) -> SsoConnection:
    conn = editable_connection(workspace_id, actor=actor)
    cert = next((c for c in conn.certificates if c.fingerprint == fingerprint), None)
    if cert is None:
        raise ConnectionError_("That certificate is not on this connection.")
    if len(conn.certificates) == 1:
        raise ConnectionError_("A connection needs at least one signing certificate. Add the new one first.")
    conn.certificates.remove(cert)
    conn.updated_at = utcnow()
    record(workspace_id, "sso.certificate_removed", actor=actor, target=conn, fingerprint=fingerprint)
    return conn


def set_jit(workspace_id: int, *, enabled: bool, role: str, actor: User | None) -> SsoConnection:
    Role(role)
    conn = live_connection(workspace_id)
    if conn is None:
        raise ConnectionError_("Start SSO setup first.")
    conn.jit_enabled, conn.jit_role = enabled, role
    staged = staged_connection(workspace_id)
    if staged is not None:
        staged.jit_enabled, staged.jit_role = enabled, role
    record(workspace_id, "sso.jit_changed", actor=actor, target=conn, enabled=enabled, role=role)
    return conn


def discard_draft(workspace_id: int, *, actor: User | None) -> None:
    staged = staged_connection(workspace_id)
    if staged is None:
        raise ConnectionError_("There is no draft to discard.")
    record(workspace_id, "sso.draft_discarded", actor=actor, target=staged)
    db.session.delete(staged)


def cancel_setup(workspace_id: int, *, actor: User | None) -> None:
    """Abandon a connection that was never turned on (a wrong IdP, a trial): it goes,
    with its certificates and pending sign-ins; the login log keeps its rows."""
    live = live_connection(workspace_id)
    if live is None:
        raise ConnectionError_("There is no SSO setup to cancel.")
    if live.is_on:
        raise ConnectionError_("SSO is on: turn it off before removing the connection.")
    staged = staged_connection(workspace_id)
    record(workspace_id, "sso.setup_cancelled", actor=actor, target=live, state=live.state)
    for conn in filter(None, (staged, live)):
        db.session.delete(conn)


def mark_tested(conn: SsoConnection, *, actor: User | None) -> SsoConnection:
    """A successful test: a live draft becomes tested; a staged draft replaces
    the live configuration (keeping the live state, so SSO stays on)."""
    now = utcnow()
    if not conn.is_staged:
        if conn.state == ConnectionState.draft.value:
            conn.state = ConnectionState.tested.value
        conn.tested_at = now
        record(conn.workspace_id, "sso.connection_tested", actor=actor, target=conn, outcome="success")
        return conn
    live = live_connection(conn.workspace_id)
    for attr in ("idp_kind", "idp_entity_id", "sso_url", "metadata_url", "metadata_xml", "metadata_status",
                 "metadata_error", "metadata_fetched_at", "jit_enabled", "jit_role"):
        setattr(live, attr, getattr(conn, attr))
    live.certificates.clear()
    db.session.flush()  # delete the old rows before inserting copies (unique fingerprint per connection)
    live.certificates.extend(_copy_cert(c, conn.workspace_id) for c in conn.certificates)
    live.tested_at = now
    live.updated_at = now
    record(conn.workspace_id, "sso.draft_promoted", actor=actor, target=live, outcome="success",
           certificates=[c.fingerprint for c in live.certificates])
    db.session.delete(conn)
    db.session.flush()
    return live


def will_sign_in_after_enabling(user: User) -> bool:
    """Under SSO: members on an authorized domain sign in through the IdP; others are blocked."""
    from app.sso.policy import domain_authorized
    return user.is_active and domain_authorized(user.workspace_id, user.email)


def enable(workspace_id: int, *, actor: User | None, override: bool = False) -> SsoConnection:
    from app.members.admin_rule import ensure_admin_remains
    conn = live_connection(workspace_id)
    if conn is None or not conn.is_configured:
        raise ConnectionError_("Set up the connection with your IdP's metadata first.")
    if conn.is_on:
        return conn
    if conn.state != ConnectionState.tested.value and not override:
        raise ConnectionError_("Run a successful test login before turning SSO on.")
    ensure_admin_remains(workspace_id, policy_check=will_sign_in_after_enabling)
    conn.state = ConnectionState.on.value
    conn.enabled_at = utcnow()
    # From now on the IdP decides who is signed in, so every open session ends, password
    # ones and remember-me cookies included: someone the IdP no longer knows, or a member
    # now blocked, must not keep weeks of access through a session that predates SSO. The
    # admin who confirmed is signed out elsewhere too; the route keeps their session in this
    # browser (keep_this_session), to show the recovery codes.
    members = db.session.scalars(scoped(User, workspace_id).where(User.status == UserStatus.active.value)).all()
    for user in members:
        user.end_all_sessions()
    record(workspace_id, "sso.enabled", actor=actor, actor_label=None if actor else "operator (CLI)", target=conn,
           override=override or None, sessions_ended=len(members) or None)
    return conn


def disable(workspace_id: int, *, actor: User | None) -> SsoConnection:
    conn = live_connection(workspace_id)
    if conn is None or not conn.is_on:
        raise ConnectionError_("SSO is not on.")
    conn.state = ConnectionState.tested.value
    record(workspace_id, "sso.disabled", actor=actor, target=conn)
    return conn


def lockout_preview(workspace_id: int) -> dict[str, list[User]]:
    """Who turning SSO on affects, by name: who must use SSO, who is blocked
    (the domains area's rule for "outside the authorized domains")."""
    from app.domains.coverage import members_outside_authorized_domains
    blocked = members_outside_authorized_domains(workspace_id)
    outside = {u.id for u in blocked}
    members = db.session.scalars(scoped(User, workspace_id).where(User.status == UserStatus.active.value)
                                 .order_by(User.name, User.email)).all()
    return {"sso": [u for u in members if u.id not in outside], "blocked": blocked}
