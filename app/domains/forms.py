from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from app.domains.service import INBOXES

METHOD_CHOICES = [("dns", "DNS TXT record"), ("email", "Email to an inbox at the domain")]
INBOX_CHOICES = [(i, f"{i}@") for i in INBOXES]


class AddDomainForm(FlaskForm):
    name = StringField("Domain", validators=[DataRequired("Enter a domain, such as example.com."),
                                             Length(max=300, message="That is too long to be a domain name.")],
                       render_kw={"placeholder": "example.com", "autocomplete": "off", "spellcheck": "false"},
                       id="domain-name")  # ids prefixed: other sections share the Security page
    method = RadioField("Verify by", choices=METHOD_CHOICES, default="dns",
                        validators=[DataRequired("Choose how to verify.")], id="domain-method")
    inbox = SelectField("Inbox (for email)", choices=INBOX_CHOICES, default="admin", id="domain-inbox",
                        description="By email, we send a link to this inbox at the domain.")


class MethodForm(FlaskForm):
    method = RadioField("Verify by", choices=METHOD_CHOICES, validators=[DataRequired("Choose how to verify.")])
    inbox = SelectField("Inbox (for email)", choices=INBOX_CHOICES, default="admin")


class ActionForm(FlaskForm):
    """A button that changes something: CSRF only."""
