"""Who a workspace's verified domains cover, and what losing one means for sign-in: the
members outside them (blocked once SSO is on), the members only one domain covers, and
ending their sessions when that domain stops counting. Read by the domains service, the
DNS checks (verification) and the SSO area's lock-out preview."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from app.audit.service import record
from app.auth.policy import SignInMethod, sign_in_method
from app.domains.names import email_domain
from app.extensions import db
from app.models import Domain, DomainStatus, User, UserStatus


def members_outside_authorized_domains(workspace_id: int, *, extra_domains: Iterable[str] = ()) -> list[User]:
    """Active and invited members whose email domain no verified domain (nor one of
    `extra_domains`) covers: they are blocked once SSO is enforced."""
    covered = set(_verified_names(workspace_id))
    covered.update(filter(None, (email_domain(d) for d in extra_domains)))
    return [u for u in _active_and_invited(workspace_id) if not _is_covered(u, covered)]


def members_covered_only_by(domain: Domain) -> list[User]:
    """Members whom only this domain covers: outside the authorized domains once it is removed."""
    if not domain.is_verified:
        return []
    return members_only_on(domain)


def members_only_on(domain: Domain) -> list[User]:
    """Active and invited members on this domain (or a subdomain) whom no other verified
    domain covers: whether it counts decides whether they may sign in once SSO is on."""
    others = set(_verified_names(domain.workspace_id)) - {domain.name}
    return [u for u in _active_and_invited(domain.workspace_id)
            if _is_covered(u, {domain.name}) and not _is_covered(u, others)]


def sso_enforced(workspace_id: int) -> bool:
    """Is SSO on, so that members outside the authorized domains are blocked? Asked of the
    sign-in policy the SSO area registers, with any active member: with SSO on it answers
    "SSO" or "blocked" for everyone, never "password"."""
    member = db.session.scalar(select(User).where(User.workspace_id == workspace_id,
                                                  User.status == UserStatus.active.value).limit(1))
    return member is not None and sign_in_method(member) is not SignInMethod.password


def _verified_names(workspace_id: int) -> list[str]:
    return list(db.session.scalars(select(Domain.name).where(Domain.workspace_id == workspace_id,
                                                             Domain.status == DomainStatus.verified.value)))


def _active_and_invited(workspace_id: int) -> list[User]:
    return list(db.session.scalars(select(User).where(
        User.workspace_id == workspace_id, User.status.in_((UserStatus.active.value, UserStatus.invited.value)))
        .order_by(User.email_normalized)))


def _is_covered(user: User, covered: set[str]) -> bool:
    name = email_domain(user.email_normalized) or ""
    return any(name == d or name.endswith("." + d) for d in covered)


@dataclass(frozen=True)
class LostCover:
    """What a domain that stopped counting (removed, failed) means for sign-in: the members
    only it covered, and whether SSO is on (then they are blocked and were signed out; without
    SSO nothing changes until it is turned on)."""
    was_verified: bool
    members: list[User]
    sso_on: bool


def blocked_now(uncovered: list[User]) -> list[User]:
    """Of members no verified domain covers, the active ones the sign-in policy blocks now
    (SSO on). The policy's answer is the same for all of them, so it is asked once, not
    once per member (a domain can cover thousands)."""
    active = [u for u in uncovered if u.status == UserStatus.active.value]
    return active if active and sign_in_method(active[0]) is SignInMethod.blocked else []


def end_sessions_of_newly_blocked(members: list[User], workspace_id: int, *, reason: str) -> int:
    """After a domain stopped counting: if SSO is on, the members it alone covered are
    blocked now, and their open sessions end too, as when SSO is turned on (the admin who
    made the change included: removal is refused unless another admin can still sign in).
    Call after the change is flushed."""
    blocked = blocked_now(members)
    for user in blocked:
        user.end_all_sessions()
        record(workspace_id, "member.sessions_ended", actor_label="sign-in policy", target=user, reason=reason)
    return len(blocked)
