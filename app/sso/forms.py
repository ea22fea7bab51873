from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import URL, DataRequired, Length, Optional

from app.models.sso import IdpKind
from app.models.workspace import Role

IDP_CHOICES = [(k.value, k.label) for k in IdpKind]  # Okta first


class IdpForm(FlaskForm):
    idp = SelectField("Identity provider", choices=IDP_CHOICES, default=IdpKind.okta.value)


class MetadataUrlForm(FlaskForm):
    metadata_url = StringField("IdP metadata URL", validators=[
        DataRequired("Paste the metadata URL from your IdP."), Length(max=2048),
        URL(require_tld=False, message="Enter a full URL, starting with https://.")])


class MetadataXmlForm(FlaskForm):
    metadata_file = FileField("Metadata file (XML)")
    metadata_xml = TextAreaField("…or paste the metadata XML", validators=[Optional(), Length(max=512 * 1024)])


class ManualForm(FlaskForm):
    entity_id = StringField("IdP entity ID (Issuer)", validators=[DataRequired("Enter the IdP's entity ID."),
                                                                  Length(max=1024)])
    sso_url = StringField("IdP single sign-on URL", validators=[
        DataRequired("Enter the IdP's SSO URL."), Length(max=2048),
        URL(require_tld=False, message="Enter a full URL, starting with https://.")])
    certificate = TextAreaField("Signing certificate (PEM)", validators=[
        DataRequired("Paste the IdP's signing certificate."), Length(max=20000)])


class CertificateForm(FlaskForm):
    certificate = TextAreaField("Add a signing certificate (PEM)", validators=[
        DataRequired("Paste the certificate."), Length(max=20000)])


class JitForm(FlaskForm):
    jit_enabled = BooleanField("Create an account on first sign-in for people on your authorized domains")
    jit_role = SelectField("Role for new accounts", choices=[(r.value, r.label) for r in Role])


class EnableForm(FlaskForm):
    confirm = BooleanField("I have reviewed who will be affected", validators=[
        DataRequired("Confirm that you reviewed who will be affected.")])


class ActionForm(FlaskForm):
    """A button that only needs CSRF."""


class RecoverySignInForm(FlaskForm):
    email = EmailField("Admin email", validators=[DataRequired("Enter your email."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=128)])
    code = StringField("Recovery code", validators=[DataRequired("Enter one of your recovery codes."),
                                                    Length(max=40)])
