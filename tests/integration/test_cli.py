"""CLI contract: stdout carries only the value; errors exit non-zero with one line on stderr, writing nothing."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Recording, User, Workspace
from app.seed import DEMO_EMAIL


@pytest.fixture
def runner(app):
    return app.test_cli_runner(mix_stderr=False) if "mix_stderr" in app.test_cli_runner.__code__.co_varnames \
        else app.test_cli_runner()


def _count(model):
    return db.session.scalar(db.select(db.func.count()).select_from(model))


def test_workspace_create_prints_only_the_slug(runner):
    result = runner.invoke(args=["workspace", "create", "Acme Corp", "--plan", "enterprise", "--admin-email",
                                 "boss@acme.test", "--admin-password", "a-long-password"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "acme-corp\n"
    again = runner.invoke(args=["workspace", "create", "Acme Corp", "--plan", "free", "--admin-email",
                                "boss@acme.test", "--admin-password", "a-long-password"])
    assert again.stdout == "acme-corp-2\n"
    ws = db.session.scalar(db.select(Workspace).where(Workspace.slug == "acme-corp"))
    assert ws.plan == "enterprise"
    admin = db.session.scalar(db.select(User).where(User.workspace_id == ws.id))
    assert admin.role == "admin" and admin.email == "boss@acme.test"


def test_a_generated_password_goes_to_stderr(runner):
    result = runner.invoke(args=["workspace", "create", "Beta", "--plan", "business", "--admin-email", "b@beta.test"])
    assert result.exit_code == 0 and result.stdout == "beta\n"
    assert result.stderr.startswith("Admin password (shown once): ")
    password = result.stderr.split(": ", 1)[1].strip()
    from app.auth.service import check_password
    assert check_password("b@beta.test", password).users


@pytest.mark.parametrize("args,reason", [
    (["X", "--plan", "gold", "--admin-email", "a@x.test"], "Invalid value for '--plan'"),
    (["X", "--plan", "free", "--admin-email", "not-an-email", "--admin-password", "long-enough-1"],
     "Error: invalid admin email"),
    (["X", "--plan", "free", "--admin-email", "a@x.test", "--admin-password", "short"],
     "Error: the admin password must be 10 to 128 characters"),
    (["", "--plan", "free", "--admin-email", "a@x.test", "--admin-password", "long-enough-1"],
     "Error: the workspace name must be 1 to 100 characters"),
    (["N" * 101, "--plan", "free", "--admin-email", "a@x.test", "--admin-password", "long-enough-1"],
     "Error: the workspace name must be 1 to 100 characters"),
])
def test_bad_input_exits_non_zero_and_writes_nothing(runner, args, reason):
    result = runner.invoke(args=["workspace", "create", *args])
    assert result.exit_code != 0
    assert result.stdout == ""
    assert reason in result.stderr
    assert _count(Workspace) == 0 and _count(User) == 0


def test_seed_demo_only_on_an_empty_database(runner):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0 and first.stdout == ""
    assert "Demo admin: admin@acme.test / gatehouse-demo" in first.stderr
    users, recordings = _count(User), _count(Recording)
    assert users == 5 and recordings == 12
    outside = db.session.scalar(db.select(User).where(User.email_normalized.like("%@freelance.test")))
    assert outside is not None and outside.status == "active"
    from app.domains.coverage import members_outside_authorized_domains
    workspace_id = db.session.scalar(db.select(Workspace.id))
    assert [u.email for u in members_outside_authorized_domains(workspace_id)] == ["linus@freelance.test"]
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and "not seeded" in second.stderr
    assert _count(User) == users and _count(Workspace) == 1
    assert db.session.scalar(db.select(Workspace.plan)) == "enterprise"
    assert db.session.scalar(db.select(User.role).where(User.email_normalized == DEMO_EMAIL)) == "admin"
