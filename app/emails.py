"""Email address syntax, one rule for forms, CLI and SCIM."""
from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from app.memo import memoized


class InvalidEmail(ValueError):
    pass


@memoized(max_length=320)  # a SAML sign-in asks twice: its NameID before and after validation
def normalize_address(address: str) -> str:
    """The address as users typed it, checked for syntax (no DNS look-up, so
    sign-in never waits on DNS; special-use names like .test are allowed for
    demos and tests, since deliverability is proven by the emails we send)."""
    try:
        return validate_email((address or "").strip(), check_deliverability=False,
                              globally_deliverable=False,
                              test_environment=True).normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
