from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField

from app.auth.forms import email_field
from app.models import Role
from wtforms.validators import DataRequired, Length, Regexp

ROLE_CHOICES = [(r.value, r.label) for r in Role]


class InviteForm(FlaskForm):
    email = email_field("Email")
    name = StringField("Name (optional)", validators=[Length(max=200),
                                                      Regexp(r"^[^\x00]*$", message="The name has a NUL character.")])
    role = SelectField("Role", choices=ROLE_CHOICES, default="creator_lite")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class ActionForm(FlaskForm):
    """A button that changes something: CSRF only."""


class DeleteForm(FlaskForm):
    """Permanent deletion: where the recordings go, and an explicit confirmation."""

    transfer_to = SelectField("Their recordings", choices=[("", "Delete them")], default="")
    confirm = BooleanField("I understand this permanently deletes this member's data and cannot be undone.",
                           validators=[DataRequired("Tick the box to confirm the permanent deletion.")])

    def set_candidates(self, candidates) -> None:
        self.transfer_to.choices = [("", "Delete them")] + [
            (str(u.id), f"Transfer them to {u.display_name} ({u.email})") for u in candidates]
