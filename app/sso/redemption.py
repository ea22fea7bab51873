"""Redeeming a posted response: the request stored under its RelayState, that request's
connection, the member the response names — and the single use of the request and of
the assertion.

On PostgreSQL all of it is **one statement, sent before the response is validated**,
which claims as it reads:

- it deletes the stored request (`DELETE … RETURNING`): a concurrent POST of the same
  RelayState waits for this transaction, then finds nothing;
- it inserts the assertion's id into the replay cache (`ON CONFLICT DO NOTHING`), unless
  the request has expired: an id used before, or being used by a transaction not yet
  committed (which it waits for), is not inserted, and the sign-in is refused as a replay;
- it reads and locks (`FOR NO KEY UPDATE`) the member the NameID names, so that from here to
  the commit no deactivation or deletion lands between the check and the session. Not `FOR
  SHARE`: two sign-ins of one member at once (two tabs) would each hold it and each then
  update the row (the last sign-in), a deadlock; this way the second waits for the first.
  The lock is taken on the NameID as posted, before validation: a forged response holds
  its member's row for as long as one validation takes (its size is capped, the ACS is
  rate limited); another writer of that row waits that long, and nothing else happens.

Nothing is decided on what it claimed until python3-saml has validated the response:
the checks run in the same order as on SQLite, and every refusal before or during
validation rolls the claims back (`release`), so that the request stays for another
try and no unvalidated id is remembered. After validation the claims hold: a policy
refusal (a deactivated member, a domain not authorized) commits them with its log
row, as a sign-in commits them with its session. The claim is checked against the
validated assertion (`use_once`); they are the same assertion, since python3-saml
accepts exactly one.

Why so, rather than a read, the validation and then a write: each statement costs a
round trip and the ORM's execution on every sign-in, and this one does the work of both
(bench/acs.py; README, "SAML ACS benchmark"). SQLite allows no DELETE inside a WITH, so
there the read comes first and `use_once` writes after validation, in three statements;
SQLite also lets no other writer in once the sign-in has written.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import String, bindparam, delete, func, insert, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import aliased, lazyload

from app.extensions import db
from app.models import SamlReplay, SamlRequest, SsoConnection, User, utcnow
from app.security import hash_secret
from app.sso import checks, policy
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.sp import clock_skew

REQUEST_TTL = dt.timedelta(minutes=10)
REPLAY_KEPT_AT_MOST = dt.timedelta(days=1)


@dataclass(frozen=True)
class Member:
    """The authorized member with `email` (None: nobody), as read with the stored request."""

    email: str
    user: User | None


@dataclass(frozen=True)
class Claim:
    """What the PostgreSQL statement claimed besides the request."""

    assertion_id: str | None  # the id it tried to remember (None: the request had expired, or no id)
    remembered: bool  # False: that id is in the replay cache already


@dataclass
class Redeemed:
    request: SamlRequest
    connection: SsoConnection
    member: Member | None  # None: the NameID as posted is no email, so nobody was looked up
    claim: Claim | None  # PostgreSQL: the request is consumed already (see the module docstring)


# The statements every sign-in runs are built once: for a one-row statement, building it
# and its cache key costs about as much Python as running it (profiled on the ACS).
_requests, _connections, _users, _replays = (SamlRequest.__table__, SsoConnection.__table__, User.__table__,
                                             SamlReplay.__table__)

# SQLite: the read.
_REQUEST_CONNECTION_AND_MEMBER = (
    select(SamlRequest, SsoConnection, User)
    .join(SsoConnection, SsoConnection.id == SamlRequest.connection_pk)
    .outerjoin(User, policy.IS_AUTHORIZED_MEMBER_OF_CONNECTION)
    .options(lazyload(User.workspace))  # a sign-in never reads it: no join for it
    .where(SamlRequest.relay_state_hash == bindparam("relay_state_hash"))
    .execution_options(populate_existing=True))
CONSUME_REQUEST = delete(_requests).where(_requests.c.id == bindparam("request_pk"))
_REMEMBER_ASSERTION = insert(_replays)
_MEMBER_STATUS = select(_users.c.status).where(_users.c.id == bindparam("member_pk"))

# PostgreSQL: the claim (see the module docstring).
_consumed = (delete(_requests).where(_requests.c.relay_state_hash == bindparam("relay_state_hash"))
             .returning(*_requests.c).cte("consumed"))
_consumed_with_connection = _consumed.join(_connections, _connections.c.id == _consumed.c.connection_pk)
_assertion_id = bindparam("assertion_id", type_=String)
_remembered = (
    pg_insert(_replays).from_select(
        ["workspace_id", "issuer", "assertion_id", "expires_at"],
        select(_connections.c.workspace_id,
               func.coalesce(bindparam("issuer", type_=String), _connections.c.idp_entity_id, ""),
               _assertion_id, bindparam("replay_expires_at", type_=_replays.c.expires_at.type))
        .select_from(_consumed_with_connection)
        .where(_consumed.c.expires_at > bindparam("now", type_=_requests.c.expires_at.type),
               _assertion_id.is_not(None)))
    .on_conflict_do_nothing()
    .returning(_replays.c.assertion_id)
    .cte("remembered"))
_member_now = (select(_users).select_from(_consumed_with_connection)
               .join(_users, policy.IS_AUTHORIZED_MEMBER_OF_CONNECTION)
               .with_for_update(key_share=True, of=_users)  # FOR NO KEY UPDATE (see the module docstring)
               .cte("member_now"))
_ConsumedRequest, _LockedMember = aliased(SamlRequest, _consumed), aliased(User, _member_now)
_CLAIM = (select(_ConsumedRequest, SsoConnection, _LockedMember,
                 select(_remembered.c.assertion_id).scalar_subquery())
          .join(SsoConnection, SsoConnection.id == _ConsumedRequest.connection_pk)
          .outerjoin(_LockedMember, true())
          .options(lazyload(_LockedMember.workspace))
          # The rows as read now, even for a member this request has loaded already (a browser
          # that is signed in: app.auth.sessions loads them before the view).
          .execution_options(populate_existing=True))


def redeem(relay_state: str | None, claimed_email: str | None, summary: dict, now: dt.datetime) -> Redeemed | None:
    """The stored request and its connection, in one query; in the same query, the member the
    response claims to be (`claimed_email`, from the NameID before validation): a valid response
    names that member nearly always, and their own look-up would be another round trip on every
    sign-in. On PostgreSQL the same statement claims the request and the assertion (above)."""
    if not relay_state or len(relay_state) > 200:
        return None
    parameters = {"relay_state_hash": hash_secret(relay_state), **policy.member_parameters(claimed_email)}
    claiming = db.session.get_bind().dialect.name == "postgresql"
    if claiming:
        assertion_id = summary["assertion_id"][:256] if summary["assertion_id"] else None
        issuer = summary["issuer"][:1024] if summary["issuer"] else None  # None: the connection's entity id
        parameters |= {"assertion_id": assertion_id, "issuer": issuer, "replay_expires_at": _replay_expiry(summary),
                       "now": now}
        row = db.session.execute(_CLAIM, parameters).first()
    else:
        row = db.session.execute(_REQUEST_CONNECTION_AND_MEMBER, parameters).first()
    if row is None:
        return None
    # Only read from here on, and deleted by a statement: detached, its loaded values outlive a
    # rollback (a refusal's), even once a concurrent POST of the same response has consumed the
    # row, where reloading it would fail.
    db.session.expunge(row[0])
    claim = None
    if claiming:
        tried = assertion_id if row[0].expires_at > now else None
        claim = Claim(tried, remembered=tried is not None and row[3] == tried)
    return Redeemed(row[0], row[1], Member(claimed_email, row[2]) if claimed_email else None, claim)


def release(redeemed: Redeemed) -> None:
    """A refusal before the response proved valid: undo what the PostgreSQL statement claimed
    (the request stays, no id is remembered, the member's row is unlocked), as on SQLite, where
    nothing was written yet. The connection keeps its loaded values for the refusal's log row."""
    if redeemed.claim is None:
        return
    db.session.expunge(redeemed.connection)
    db.session.rollback()
    db.session.add(redeemed.connection)


def consume_expired(redeemed: Redeemed) -> None:
    """An expired request is used up all the same (on PostgreSQL, already deleted)."""
    if redeemed.claim is None:
        _consume(redeemed.request)


def use_once(redeemed: Redeemed, assertion_id: str, summary: dict) -> Member | None:
    """After validation: remember the assertion in the replay cache and consume the request, or
    neither; and return the claimed member as they are now (the caller commits).

    On PostgreSQL that was claimed before validation (the module docstring); here it is checked.
    On SQLite, three statements: the replay cache's unique index decides, at its insert, with no
    look-up first that another POST could slip past; then the request is deleted (if another
    response to it consumed it first, this one is refused); then the member's status is read
    again, since they were read before validation (deactivated by SCIM meanwhile, say)."""
    member = redeemed.member
    if redeemed.claim is not None:
        if redeemed.claim.assertion_id != assertion_id[:256]:
            release(redeemed)
            raise SamlError(E.invalid, "the validated assertion is not the one the response named")
        if not redeemed.claim.remembered:
            release(redeemed)
            raise SamlError(E.replay, f"assertion {assertion_id} already used")
        return member
    conn = redeemed.connection
    row = {"workspace_id": conn.workspace_id, "issuer": (summary["issuer"] or conn.idp_entity_id or "")[:1024],
           "assertion_id": assertion_id[:256], "expires_at": _replay_expiry(summary)}
    member_pk = member.user.id if member is not None and member.user is not None else None
    try:
        db.session.execute(_REMEMBER_ASSERTION, row)
    except IntegrityError as exc:
        db.session.rollback()
        raise SamlError(E.replay, f"assertion {assertion_id} already used") from exc
    if not _consume(redeemed.request):
        raise SamlError(E.request_unknown, "the request was consumed concurrently")
    if member_pk is not None and db.session.scalar(_MEMBER_STATUS, {"member_pk": member_pk}) != member.user.status:
        try:
            db.session.refresh(member.user)
        except InvalidRequestError:  # deleted meanwhile
            return Member(member.email, None)
    return member


def _consume(req: SamlRequest) -> bool:
    """Delete the stored request; False if it was gone already."""
    return db.session.execute(CONSUME_REQUEST, {"request_pk": req.id},
                              execution_options={"synchronize_session": False}).rowcount == 1


def _replay_expiry(summary: dict) -> dt.datetime:
    """How long the replay cache keeps an assertion's id: until it could no longer be valid, but
    no more than a day. (The values are the response's as posted, on PostgreSQL before validation:
    year 9999 is valid XML. A response must also answer a stored request, which lives ten minutes
    and is used once: the cache is the second line.)"""
    now = utcnow()
    limits = [t for t in (checks.parse_time(summary["not_on_or_after"]),
                          checks.parse_time(summary["scd_not_on_or_after"])) if t]
    until = min(max(limits), now + REPLAY_KEPT_AT_MOST) if limits else now + REQUEST_TTL
    return until + dt.timedelta(seconds=clock_skew())
