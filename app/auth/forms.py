from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from app.emails import InvalidEmail, normalize_address


class WorkEmail:
    """A syntactically valid address (no DNS look-up: sign-in must not wait on DNS)."""

    def __call__(self, form, field):
        try:
            field.data = normalize_address(field.data)
        except InvalidEmail as exc:
            raise ValidationError(f"Enter a valid email address ({exc}).") from exc


def email_field(label="Work email"):
    return EmailField(label, validators=[DataRequired("Enter your email address."), Length(max=254), WorkEmail()])


def new_password_field(label="New password"):
    return PasswordField(label, validators=[DataRequired("Choose a password."),
                                            Length(min=10, max=128, message="Use 10 to 128 characters.")])


class EmailStepForm(FlaskForm):
    email = email_field()


class PasswordStepForm(FlaskForm):
    email = HiddenField(validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=128)])
    remember = BooleanField("Keep me signed in on this device", default=False)


class WorkspaceChoiceForm(FlaskForm):
    workspace = SelectField("Workspace", coerce=int, validate_choice=True)


class ForgotPasswordForm(FlaskForm):
    email = email_field("Email")


class SetPasswordForm(FlaskForm):
    password = new_password_field()
    confirm = PasswordField("Repeat password", validators=[EqualTo("password", "The passwords don't match.")])


class AcceptInvitationForm(SetPasswordForm):
    name = StringField("Your name", validators=[DataRequired("Tell your team your name."), Length(max=200)])


class LogoutForm(FlaskForm):
    pass
