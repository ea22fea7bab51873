"""Member management: source and groups, SCIM-managed members, permanent deletion
(confirm, transfer, the purge job with a real RQ worker), CSRF and bad input."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, EmailToken, Recording, User
from app.models.scim import Group, GroupMember, ScimRequestLog
from app.models.user_purge import UserPurge
from tests.conftest import csrf_token_from, sign_in


def add_recordings(user, n):
    db.session.add_all([Recording(workspace_id=user.workspace_id, owner_id=user.id, title=f"Demo {i}",
                                  duration_seconds=60) for i in range(n)])
    db.session.commit()


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def leaver(workspace, make_user):
    return make_user(workspace, "leaver@acme.test", role="creator", status="deactivated", name="Lee Leaver")


# --- the list --------------------------------------------------------------------------------

def test_list_shows_source_and_groups(admin_client, workspace, make_user):
    scim_user = make_user(workspace, "okta.user@acme.test", source="scim")
    make_user(workspace, "jit@acme.test", source="sso_jit")
    group = Group(workspace_id=workspace.id)
    group.set_display_name("Engineering")
    db.session.add(group)
    db.session.flush()
    db.session.add(GroupMember(group_id=group.id, user_id=scim_user.id, workspace_id=workspace.id))
    db.session.commit()

    html = admin_client.get("/settings/members").get_data(as_text=True)
    row = re.search(r'<tr id="member-%d">.*?</tr>' % scim_user.id, html, re.S).group(0)
    assert "SCIM" in row and "Engineering" in row and "Managed by your identity provider" in row and "Override the identity provider" in row
    assert "SSO (JIT)" in html
    filtered = admin_client.get("/settings/members?source=scim", headers={"HX-Request": "true"})
    assert "HX-Request" in filtered.headers["Vary"]
    html = filtered.get_data(as_text=True)
    assert "<html" not in html and "Engineering" in html
    assert "okta.user@acme.test" in html and "jit@acme.test" not in html


def test_row_actions_name_their_member_and_destructive_ones_ask_first(admin_client, admin, workspace, make_user):
    """A screen reader's list of buttons says whom each acts on; Deactivate and Revoke confirm."""
    from html import unescape
    from app.members.service import invite
    ada = make_user(workspace, "ada@acme.test", name="Ada Lovelace")
    invite(workspace, "newbie@acme.test", "creator", actor=admin)
    db.session.commit()
    html = unescape(admin_client.get("/settings/members").get_data(as_text=True))
    text = re.sub(r"<[^>]+>", "", html)
    assert "Deactivate Ada Lovelace" in text
    assert "Resend the invitation to newbie@acme.test" in text and "Revoke the invitation to newbie@acme.test" in text
    row = re.search(r'<tr id="member-%d">.*?</tr>' % ada.id, html, re.S).group(0)
    assert 'data-confirm="Deactivate Ada Lovelace? They are signed out everywhere at once' in row
    assert 'data-confirm="Revoke the invitation to newbie@acme.test? Its link stops working."' in html


@pytest.mark.parametrize("query", ["page=-5", "page=abc", "status=bogus&role=nope", "q=" + "%" * 300,
                                   "source=nope", "q=%5C%25_"])
def test_bad_filters_never_fail(admin_client, query):
    response = admin_client.get(f"/settings/members?{query}")
    assert response.status_code == 200


def test_a_nul_in_a_filter_is_a_clear_400(admin_client):
    response = admin_client.get("/settings/members?status=bogus&role=%00")
    assert response.status_code == 400 and "contains a NUL character" in response.get_data(as_text=True)


@pytest.mark.postgres
def test_invitation_name_with_a_nul_is_400_not_500(db_backend, admin_client):
    """PostgreSQL cannot store a NUL character: the page says so, nothing is written."""
    response = admin_client.post("/settings/members/invite", data={"email": "new@acme.test", "name": "Ne\x00w",
                                                                   "role": "creator"})
    assert response.status_code == 400 and "contains a NUL character" in response.get_data(as_text=True)
    assert count(User, User.email_normalized == "new@acme.test") == 0


# --- SCIM-managed members --------------------------------------------------------------------

def test_scim_managed_member_needs_the_override(admin_client, workspace, make_user):
    user = make_user(workspace, "okta.user@acme.test", source="scim")
    response = admin_client.post(f"/settings/members/{user.id}/deactivate", follow_redirects=True)
    assert "managed by your identity provider" in response.get_data(as_text=True)
    assert db.session.get(User, user.id).status == "active"

    admin_client.post(f"/settings/members/{user.id}/deactivate", data={"override": "1"})
    assert db.session.get(User, user.id).status == "deactivated"
    assert count(AuditEvent, AuditEvent.action == "member.idp_override") == 1

    admin_client.post(f"/settings/members/{user.id}/reactivate")
    assert db.session.get(User, user.id).status == "deactivated"
    admin_client.post(f"/settings/members/{user.id}/reactivate", data={"override": "1"})
    assert db.session.get(User, user.id).status == "active"


def test_other_members_need_no_override(admin_client, workspace, make_user):
    user = make_user(workspace, "pw@acme.test")
    admin_client.post(f"/settings/members/{user.id}/deactivate")
    assert db.session.get(User, user.id).status == "deactivated"


# --- permanent deletion ----------------------------------------------------------------------

def test_confirm_page_names_what_will_be_deleted(admin_client, leaver):
    add_recordings(leaver, 3)
    html = admin_client.get(f"/settings/members/{leaver.id}/delete").get_data(as_text=True)
    assert "Delete leaver@acme.test permanently?" in html
    assert "<strong>3</strong> recordings" in html
    assert "Transfer them to Admin (admin@acme.test)" in html


def test_only_deactivated_members_can_be_deleted(admin_client, workspace, make_user):
    active = make_user(workspace, "active@acme.test")
    response = admin_client.get(f"/settings/members/{active.id}/delete")
    assert response.status_code == 409 and "Deactivate first" in response.get_data(as_text=True)
    response = admin_client.post(f"/settings/members/{active.id}/delete", data={"confirm": "y"})
    assert response.status_code == 409
    assert count(UserPurge) == 0


def test_delete_needs_the_confirmation_and_a_valid_target(admin_client, leaver, make_workspace):
    response = admin_client.post(f"/settings/members/{leaver.id}/delete", data={})
    assert response.status_code == 422 and "Tick the box" in response.get_data(as_text=True)
    other = make_workspace("Globex", "enterprise", "boss@globex.test")
    outsider = db.session.scalar(select(User).where(User.workspace_id == other.id))
    for target in (str(outsider.id), str(leaver.id), "abc", "99999"):
        response = admin_client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y",
                                                                                     "transfer_to": target})
        assert response.status_code == 422
    assert count(UserPurge) == 0


def test_other_workspaces_members_are_404(admin_client, make_workspace, make_user):
    other = make_workspace("Globex", "enterprise", "boss@globex.test")
    outsider = make_user(other, "gone@globex.test", status="deactivated")
    assert admin_client.get(f"/settings/members/{outsider.id}/delete").status_code == 404
    assert admin_client.post(f"/settings/members/{outsider.id}/delete", data={"confirm": "y"}).status_code == 404
    purge = UserPurge(workspace_id=other.id, user_id=outsider.id, user_label="x")
    db.session.add(purge)
    db.session.commit()
    assert admin_client.get(f"/settings/members/deletions/{purge.id}").status_code == 404


@pytest.mark.postgres
def test_delete_runs_to_the_end_and_pseudonymises(admin_client, admin, leaver, workspace, jobs):
    leaver_id = leaver.id
    add_recordings(leaver, 7)
    db.session.add(EmailToken(workspace_id=workspace.id, user_id=leaver.id, purpose="password_reset",
                              token_hash="a" * 64, expires_at=leaver.created_at))
    group = Group(workspace_id=workspace.id)
    group.set_display_name("Sales")
    db.session.add(group)
    db.session.flush()
    db.session.add(GroupMember(group_id=group.id, user_id=leaver_id, workspace_id=workspace.id))
    db.session.add(ScimRequestLog(workspace_id=workspace.id, method="PATCH", path=f"/scim/v2/Users/{leaver_id}",
                                  status=200, duration_ms=2, body='{"userName": "leaver@acme.test"}',
                                  client="SCIM: Okta", user_id=leaver_id))
    db.session.commit()
    response = admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    assert response.status_code == 303
    progress_url = response.headers["Location"]
    page = admin_client.get(progress_url).get_data(as_text=True)
    assert "Waiting to start" in page and 'hx-trigger="every 1s"' in page
    assert re.search(r'hx-get="/settings/members/deletions/\d+\?poll=1"', page)  # no activity of the admin

    jobs()
    fragment = admin_client.get(progress_url, headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "Deleted" in html and "hx-trigger" not in html and "<html" not in html
    assert "Recordings deleted</dt>\n    <dd>7 of 7" in html
    assert db.session.get(User, leaver_id) is None
    assert count(Recording, Recording.owner_id == leaver_id) == 0
    assert count(EmailToken, EmailToken.user_id == leaver_id) == 0
    assert count(GroupMember, GroupMember.user_id == leaver_id) == 0
    assert count(ScimRequestLog) == 0
    assert db.session.get(Group, group.id) is not None  # the group itself stays

    audit = admin_client.get("/settings/audit").get_data(as_text=True)
    assert "leaver@acme.test" not in audit
    purge = db.session.scalar(select(UserPurge))
    assert f"Deleted user #{purge.id}" in audit and "member.purged" in audit


@pytest.mark.postgres
def test_transfer_keeps_the_recordings(admin_client, admin, leaver, jobs):
    leaver_id = leaver.id
    add_recordings(leaver, 4)
    response = admin_client.post(f"/settings/members/{leaver_id}/delete",
                                 data={"confirm": "y", "transfer_to": str(admin.id)})
    assert response.status_code == 303
    jobs()
    assert count(Recording, Recording.owner_id == admin.id) == 4
    assert db.session.get(User, leaver_id) is None
    library = admin_client.get("/library").get_data(as_text=True)
    assert "Demo 3" in library


def test_rerunning_a_finished_purge_changes_nothing(admin_client, leaver, jobs):
    from jobs.members import purge_user
    leaver_id, workspace_id = leaver.id, leaver.workspace_id
    add_recordings(leaver, 2)
    admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    jobs()
    before = db.session.scalar(select(UserPurge)).counts
    result = purge_user(workspace_id, leaver_id)
    assert result["state"] == "done" and result["counts"] == before
    assert count(AuditEvent, AuditEvent.action == "member.purged") == 1


def test_reactivation_during_the_purge_stops_it(admin_client, leaver, jobs):
    from app.members import deletion
    add_recordings(leaver, 5)
    admin_client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"})
    purge = db.session.scalar(select(UserPurge))
    # The IdP reactivates them (SCIM active=true) before the worker gets there.
    user = db.session.get(User, leaver.id)
    user.status = "active"
    db.session.commit()
    deletion.run(purge.id, batch_size=2)
    db.session.refresh(purge)
    assert purge.state == "failed" and "reactivated" in purge.error
    assert count(Recording, Recording.owner_id == leaver.id) == 5
    page = admin_client.get(f"/settings/members/deletions/{purge.id}").get_data(as_text=True)
    assert "reactivated while being deleted" in page and "Try again" in page and "hx-trigger" not in page


def test_admin_cannot_reactivate_a_member_being_deleted(admin_client, leaver):
    admin_client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"})
    response = admin_client.post(f"/settings/members/{leaver.id}/reactivate", follow_redirects=True)
    assert "being deleted permanently" in response.get_data(as_text=True)
    assert db.session.get(User, leaver.id).status == "deactivated"


# --- access ----------------------------------------------------------------------------------

def test_non_admin_gets_403(client, workspace, make_user, leaver):
    make_user(workspace, "creator@acme.test", role="creator")
    sign_in(client, "creator@acme.test")
    assert client.get("/settings/members").status_code == 403
    assert client.get(f"/settings/members/{leaver.id}/delete").status_code == 403
    assert client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"}).status_code == 403
    assert count(UserPurge) == 0


@pytest.mark.csrf
def test_deletion_needs_the_csrf_token(client, admin, leaver):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    step = client.post("/login", data={"email": admin.email, "csrf_token": token})
    token = csrf_token_from(step.get_data(as_text=True))
    client.post("/login/password", data={"email": admin.email, "password": "correct-horse-battery",
                                         "csrf_token": token})
    forged = client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"})
    assert forged.status_code == 400 and "expired" in forged.get_data(as_text=True)
    assert count(UserPurge) == 0
    page = client.get(f"/settings/members/{leaver.id}/delete").get_data(as_text=True)
    ok = client.post(f"/settings/members/{leaver.id}/delete",
                     data={"confirm": "y", "csrf_token": csrf_token_from(page)})
    assert ok.status_code == 303 and count(UserPurge) == 1


def test_a_purge_another_worker_holds_is_left_alone(admin_client, leaver):
    from app.members import deletion
    from app.models import utcnow
    add_recordings(leaver, 3)
    admin_client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"})
    purge = db.session.scalar(select(UserPurge))
    purge.state, purge.updated_at = "running", utcnow()  # a live worker renewed its lease just now
    db.session.commit()
    deletion.run(purge.id, batch_size=1)
    assert count(Recording, Recording.owner_id == leaver.id) == 3
    assert db.session.get(UserPurge, purge.id).counts == {}


def test_a_failing_step_stops_the_purge_with_a_reason(admin_client, leaver):
    from sqlalchemy.exc import OperationalError

    from app.members import deletion
    from app.members.purge import _steps, register_purge_step

    def broken(workspace_id, user_id, batch_size):
        raise OperationalError("DELETE ...", {}, Exception("database is locked"))

    add_recordings(leaver, 2)
    admin_client.post(f"/settings/members/{leaver.id}/delete", data={"confirm": "y"})
    purge = db.session.scalar(select(UserPurge))
    register_purge_step("broken_area", broken)
    try:
        deletion.run(purge.id)
    finally:
        _steps.pop("broken_area")
    purge = db.session.get(UserPurge, purge.id)
    assert purge.state == "failed" and "broken area" in purge.error
    assert purge.counts["recordings_deleted"] == 2  # done before the failure, and counted
    assert db.session.get(User, leaver.id) is not None
    page = admin_client.get(f"/settings/members/deletions/{purge.id}").get_data(as_text=True)
    assert "Try again" in page


def test_a_deletion_stopped_then_finished_leaves_no_address_in_the_audit_log(admin_client, leaver, jobs):
    """The "deletion stopped" event names the member; once a retry finishes, it is pseudonymised
    like every other event about them (it is found by its target id)."""
    from app.members import deletion
    leaver_id = leaver.id
    admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    purge = db.session.scalar(select(UserPurge))
    user = db.session.get(User, leaver_id)
    user.status = "active"  # reactivated meanwhile: the first run stops
    db.session.commit()
    deletion.run(purge.id)
    stopped = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "member.deletion_stopped"))
    assert stopped.target_id == str(leaver_id) and stopped.target_type == "user"

    user = db.session.get(User, leaver_id)
    user.status = "deactivated"
    db.session.commit()
    response = admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})  # Try again
    assert response.status_code == 303
    jobs()

    assert db.session.get(User, leaver_id) is None
    audit = admin_client.get("/settings/audit").get_data(as_text=True)
    assert "member.deletion_stopped" in audit and "member.purged" in audit
    assert "leaver@acme.test" not in audit and "Lee Leaver" not in audit
    db.session.expire_all()
    labels = db.session.scalars(select(AuditEvent.target_label).where(AuditEvent.target_id == str(leaver_id)))
    assert all(label.startswith("Deleted user #") for label in labels)



def everything_in_the_database() -> str:
    """Every row of every table, as lowercase text: what a purge must leave without the member."""
    import json
    chunks = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(table.select()).mappings():
            chunks.append(json.dumps({k: v for k, v in row.items()}, default=str, ensure_ascii=False))
    return "\n".join(chunks).lower()


@pytest.mark.postgres
def test_after_a_purge_nothing_in_the_database_names_the_member(db_backend, admin_client, admin, workspace,
                                                                 leaver, make_user, jobs):
    """Their current and former address, their name, their externalId and IP address, wherever the
    app wrote them: audit details (an email change, another deletion's transfer), refused
    SAML sign-ins in any letter case, SCIM requests under a former address, mail about them
    sent to the admins, an earlier stopped attempt. A look-alike member is left alone."""
    from app.audit.service import record
    from app.members import deletion
    from app.models import OutboundEmail, SamlLoginLog
    leaver_id = leaver.id
    leaver.external_id = "okta-00u1leaver"
    record(workspace.id, "scim.user_email_changed", actor_label="SCIM: Okta", target=leaver,
           old="Lee.Old@acme.test", new="leaver@acme.test")
    record(workspace.id, "scim.user_created", actor_label="SCIM: Okta", target=leaver,
           external_id="okta-00u1leaver")
    record(workspace.id, "member.deletion_requested", actor=admin, target_type="user", target_id="999",
           target_label="someone@acme.test", transfer_to="leaver@acme.test")
    db.session.add(AuditEvent(workspace_id=workspace.id, action="auth.signed_in", actor_id=leaver_id,
                              actor_label="leaver@acme.test", details={"method": "sso"}, ip_address="203.0.113.7"))
    lookalike = make_user(workspace, "ada.leaver@acme.test", name="Ada Leaver-Smith")
    record(workspace.id, "member.invited", actor=admin, target=lookalike, email="ada.leaver@acme.test")
    for email in ("LEAVER@Acme.Test", "lee.old@acme.test"):
        db.session.add(SamlLoginLog(workspace_id=workspace.id, connection_id="1234-abcde1234", outcome="refused",
                                    email=email, error_code="user_deactivated", details={},
                                    trace=f'{{"nameid": "{email}"}}'))
    db.session.add(ScimRequestLog(workspace_id=workspace.id, method="GET",
                                  path='/scim/v2/Users?filter=userName eq "lee.old@acme.test"', status=200,
                                  duration_ms=1, body=None, client="SCIM: Okta"))
    db.session.add(OutboundEmail(workspace_id=workspace.id, to="admin@acme.test", template="member_deactivated",
                                 subject="Lee Leaver was deactivated by your identity provider",
                                 body_text="leaver@acme.test can no longer sign in.", status="sent"))
    db.session.commit()
    # A first attempt stops (the member was reactivated meanwhile), then a retry finishes.
    admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    first = db.session.scalar(select(UserPurge))
    db.session.get(User, leaver_id).status = "active"
    db.session.commit()
    deletion.run(first.id)
    db.session.get(User, leaver_id).status = "deactivated"
    db.session.commit()
    admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    jobs()

    db.session.expire_all()
    assert db.session.get(User, leaver_id) is None
    everything = everything_in_the_database()
    for trace in (r"(?<![\w.])leaver@acme\.test", r"lee\.old@acme\.test", r"lee leaver(?!-)", "okta-00u1leaver",
                  r"203\.0\.113\.7"):
        assert not re.search(trace, everything), trace
    assert "ada.leaver@acme.test" in everything and "ada leaver-smith" in everything  # the look-alike stays
    mail = db.session.scalar(select(OutboundEmail).where(OutboundEmail.to == "admin@acme.test",
                                                         OutboundEmail.template == "member_deactivated"))
    assert mail.subject.startswith("Deleted user #") and "can no longer sign in" in mail.body_text


def test_rows_written_while_the_purge_runs_go_too(admin_client, leaver, jobs):
    """A SCIM request naming them lands after the SCIM-log step has run (here: from a later
    step); the purge's last transaction sweeps every step once more."""
    from app.members.purge import _steps, register_purge_step
    leaver_id, workspace_id = leaver.id, leaver.workspace_id
    written = []

    def meanwhile(ws, user_id, batch_size):
        if not written:
            written.append(True)
            db.session.add(ScimRequestLog(workspace_id=workspace_id, method="PATCH",
                                          path=f"/scim/v2/Users/{leaver_id}", status=200, duration_ms=1,
                                          body=None, client="SCIM: Okta", user_id=leaver_id))
            db.session.flush()
        return 0

    admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    register_purge_step("zz_meanwhile", meanwhile)
    try:
        jobs()
    finally:
        _steps.pop("zz_meanwhile")
    assert written and db.session.get(User, leaver_id) is None
    assert count(ScimRequestLog) == 0
    purge = db.session.scalar(select(UserPurge))
    assert purge.state == "done" and purge.counts["scim_request_log"] == 1


@pytest.mark.postgres
def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, db_backend, workspace, admin, make_user,
                                                                monkeypatch):
    """Both requests arrive together; each checks the admin rule and then writes. Without a lock
    both checks pass (each still sees the other as admin) and the workspace has no admin left."""
    import threading
    import time as clock
    from app.members import service
    second = make_user(workspace, "second@acme.test", role="admin")
    first_client, second_client = app.test_client(), app.test_client()
    sign_in(first_client, admin.email)
    sign_in(second_client, second.email)
    real_check, start = service.ensure_admin_remains, threading.Barrier(2, timeout=10)

    def slow_check(*args, **kwargs):
        real_check(*args, **kwargs)
        clock.sleep(0.3)  # a slow moment between the check and the write, where the other request runs

    monkeypatch.setattr(service, "ensure_admin_remains", slow_check)
    statuses = {}

    def demote(name, client, target_id):
        start.wait()
        response = client.post(f"/settings/members/{target_id}/role", data={"role": "creator"},
                               follow_redirects=True)
        statuses[name] = response.get_data(as_text=True)

    threads = [threading.Thread(target=demote, args=("first", first_client, second.id)),
               threading.Thread(target=demote, args=("second", second_client, admin.id))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.expire_all()
    admins = db.session.scalars(select(User.email).where(User.workspace_id == workspace.id,
                                                        User.role == "admin")).all()
    assert len(admins) == 1
    refused = [name for name, page in statuses.items() if "without an active admin who can sign in" in page]
    assert len(refused) == 1


@pytest.mark.postgres
def test_a_double_submitted_deletion_makes_one_purge_that_finishes(app, db_backend, workspace, admin, make_user,
                                                                   jobs, monkeypatch):
    """Two tabs (or a double click) confirm at once: one purge, run to the end; not a second one
    that stays queued and is re-enqueued forever."""
    import threading
    import time as clock
    from app.members import deletion
    second = make_user(workspace, "second@acme.test", role="admin")
    leaver = make_user(workspace, "leaver@acme.test", status="deactivated")
    leaver_id = leaver.id
    clients = [app.test_client(), app.test_client()]
    sign_in(clients[0], admin.email)
    sign_in(clients[1], second.email)
    real_check, start = deletion.active_purge, threading.Barrier(2, timeout=10)

    def slow_check(*args):
        found = real_check(*args)
        clock.sleep(0.3)  # between "no purge yet" and writing one, where the other request runs
        return found

    monkeypatch.setattr(deletion, "active_purge", slow_check)
    statuses = []

    def confirm(client):
        start.wait()
        statuses.append(client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"}).status_code)

    threads = [threading.Thread(target=confirm, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [303, 303]
    jobs()
    db.session.expire_all()
    assert [purge.state for purge in db.session.scalars(select(UserPurge))] == ["done"]
    assert db.session.get(User, leaver_id) is None


def test_an_admin_who_demotes_themself_lands_somewhere_they_may_be(admin_client, admin, make_user, workspace):
    make_user(workspace, "second@acme.test", role="admin")
    response = admin_client.post(f"/settings/members/{admin.id}/role", data={"role": "creator"},
                                 follow_redirects=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.request.path == "/library"
    assert "You are now Creator" in html and "another admin can make you an admin again" in html
    assert db.session.get(User, admin.id).role == "creator"


@pytest.mark.postgres
def test_removing_a_domain_and_demoting_the_other_admin_at_once_leave_an_admin(app, db_backend, workspace, admin,
                                                                               make_user):
    """SSO on; admin@acme.test is covered by acme.test, second@beta.test by beta.test. One request
    removes acme.test (fine: second can still sign in) while another demotes second (fine: admin can
    still sign in). Each check passes alone; both together would leave nobody who can sign in."""
    import threading
    import time as clock
    from app.domains.service import DomainError, add_domain, remove_domain
    from app.members.admin_rule import LastAdminError, admins_who_can_sign_in
    from app.members.service import change_role
    from app.models import Domain
    from tests.support.saml_idp import TestIdp
    from tests.support.sso import setup_sso
    setup_sso(workspace, TestIdp())
    add_domain(workspace, "beta.test", verified=True)
    second = make_user(workspace, "second@beta.test", role="admin")
    db.session.commit()
    ids, start, outcome = {"admin": admin.id, "second": second.id}, threading.Barrier(2, timeout=10), {}

    def run(name, change):
        with app.app_context():
            start.wait()
            try:
                change()
                clock.sleep(0.3)  # checked, not yet committed: where the other request runs
                db.session.commit()
                outcome[name] = "done"
            except (DomainError, LastAdminError):
                db.session.rollback()
                outcome[name] = "refused"

    def remove():
        remove_domain(db.session.scalar(select(Domain).where(Domain.name == "acme.test")),
                      actor=db.session.get(User, ids["admin"]))

    def demote():
        change_role(db.session.get(User, ids["second"]), "creator", actor=db.session.get(User, ids["admin"]))

    threads = [threading.Thread(target=run, args=("remove", remove)), threading.Thread(target=run, args=("demote", demote))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.expire_all()
    assert sorted(outcome.values()) == ["done", "refused"]
    assert admins_who_can_sign_in(workspace.id)


@pytest.mark.postgres
def test_the_admin_rule_reads_admins_afresh_not_as_this_request_loaded_them(app, db_backend, workspace, admin,
                                                                            make_user):
    """This request loaded X (its current user) before the IdP moved X's address off the authorized
    domains in another request. X then demotes Y, the only other admin: the rule must see X as the
    database has them now (blocked), not as loaded (able to sign in)."""
    from app.members.admin_rule import LastAdminError
    from app.members.service import change_role
    from tests.integration.scim_helpers import ScimClient, make_token
    from tests.support.saml_idp import TestIdp
    from tests.support.sso import setup_sso
    setup_sso(workspace, TestIdp())
    second = make_user(workspace, "second@acme.test", role="admin")
    token = make_token(workspace)
    x, y = db.session.get(User, admin.id), db.session.get(User, second.id)
    assert x.email == "admin@acme.test"  # loaded now
    with app.app_context():  # the IdP's request, committed meanwhile
        response = ScimClient(app.test_client(), token).patch(
            f"/Users/{x.id}", [{"op": "replace", "path": "userName", "value": "admin@elsewhere.test"}])
        assert response.status_code == 200, response.get_data(as_text=True)
    with pytest.raises(LastAdminError):
        change_role(y, "creator", actor=x)
    db.session.rollback()
    assert db.session.get(User, second.id).role == "admin"
