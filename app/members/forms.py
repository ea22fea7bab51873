from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField

from app.auth.forms import email_field
from app.models import Role
from wtforms.validators import Length

ROLE_CHOICES = [(r.value, r.label) for r in Role]


class InviteForm(FlaskForm):
    email = email_field("Email")
    name = StringField("Name (optional)", validators=[Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="creator_lite")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class ActionForm(FlaskForm):
    """A button that changes something: CSRF only."""
