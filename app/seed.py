"""The demo workspace `make run` shows a newcomer."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from app.auth.service import set_password
from app.extensions import db
from app.models import Recording, Role, User, UserSource, UserStatus, Workspace, utcnow
from app.workspaces.service import create_workspace

DEMO_EMAIL = "admin@acme.test"
DEMO_PASSWORD = "gatehouse-demo"

MEMBERS = [
    ("Grace Hopper", "grace@acme.test", Role.creator),
    ("Alan Turing", "alan@acme.test", Role.creator_lite),
    ("Katherine Johnson", "katherine@acme.test", Role.creator),
    ("Linus Contractor", "linus@freelance.test", Role.creator_lite),  # on an outside domain
]
TITLES = ["Quarterly roadmap walkthrough", "Bug repro: login loop", "Design review", "Onboarding tour",
          "Sprint demo", "Customer call recap"]


def seed_demo() -> bool:
    if db.session.scalar(select(Workspace.id).limit(1)) is not None:
        return False
    workspace = create_workspace("Acme Inc", "enterprise", DEMO_EMAIL, DEMO_PASSWORD, admin_name="Ada Admin")
    admin = db.session.scalar(select(User).where(User.workspace_id == workspace.id))
    people = [admin]
    for name, email, role in MEMBERS:
        user = User(workspace_id=workspace.id, name=name, role=role.value, status=UserStatus.active.value,
                    source=UserSource.password.value)
        user.set_email(email)
        set_password(user, DEMO_PASSWORD)
        db.session.add(user)
        people.append(user)
    db.session.flush()
    # The demo's own domain is verified (as an operator would with `domain add --verified`), so the
    # Security page shows who is outside the authorized domains: Linus, the contractor.
    from app.domains.service import add_domain
    add_domain(workspace, "acme.test", "dns", verified=True)
    now = utcnow()
    for i, title in enumerate(TITLES * 2):
        owner = people[i % len(people)]
        db.session.add(Recording(workspace_id=workspace.id, owner_id=owner.id, title=title,
                                 duration_seconds=45 + 37 * i, created_at=now - dt.timedelta(days=i, hours=i)))
    return True
