"""Typed SAML sign-in errors: what failed, in plain words for the member, and
for the admin what we expected vs what we received and where to fix it."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SamlErrorCode(str, enum.Enum):
    malformed = "malformed_response"
    too_large = "response_too_large"
    unsolicited = "unsolicited_response"
    request_unknown = "request_unknown"
    request_expired = "request_expired"
    in_response_to_mismatch = "in_response_to_mismatch"
    other_browser = "other_browser"
    wrong_connection = "wrong_connection"
    connection_off = "connection_off"
    not_configured = "not_configured"
    metadata_not_fetched = "metadata_not_fetched"
    status_not_success = "status_not_success"
    signature_missing = "signature_missing"
    signature_invalid = "signature_invalid"
    wrong_audience = "wrong_audience"
    wrong_recipient = "wrong_recipient"
    wrong_destination = "wrong_destination"
    wrong_issuer = "wrong_issuer"
    time_window = "time_window"
    replay = "replay"
    nameid_not_email = "nameid_not_email"
    domain_not_authorized = "domain_not_authorized"
    user_unknown = "user_unknown"
    user_deactivated = "user_deactivated"
    concurrent = "concurrent_sign_in"
    invalid = "invalid_response"


# code -> (title, member message, how an admin fixes it)
_TEXT: dict[SamlErrorCode, tuple[str, str, str]] = {
    SamlErrorCode.malformed: (
        "Not a valid SAML response",
        "Your identity provider sent something we couldn't read. Try signing in again from the start.",
        "The SAMLResponse was not valid base64 or well-formed XML (documents with a DOCTYPE or entities are "
        "refused). Check that the IdP posts a SAML 2.0 Response with the HTTP-POST binding."),
    SamlErrorCode.too_large: (
        "Response too large",
        "Your identity provider sent a response larger than we accept. Try signing in again.",
        "Remove unneeded attributes from the SAML app so the response stays small."),
    SamlErrorCode.unsolicited: (
        "Sign-in must start here",
        "Signing in from your identity provider's dashboard isn't supported. Start from the Gatehouse sign-in "
        "page (or your company's Gatehouse bookmark app) instead.",
        "IdP-initiated SSO is not supported. In Okta, hide the SAML app's icon and add a bookmark app that points "
        "at this connection's login URL."),
    SamlErrorCode.request_unknown: (
        "Sign-in link expired",
        "This sign-in attempt has expired or was already used. Start again from the sign-in page.",
        "The RelayState did not match a sign-in we started (or it was already used). Start from Gatehouse."),
    SamlErrorCode.request_expired: (
        "Sign-in took too long",
        "This sign-in attempt took too long and has expired. Start again from the sign-in page.",
        "Complete the sign-in at the identity provider within a few minutes."),
    SamlErrorCode.in_response_to_mismatch: (
        "Response for another sign-in",
        "This response belongs to a different sign-in attempt. Start again from the sign-in page.",
        "The response's InResponseTo does not match the request this browser sent."),
    SamlErrorCode.other_browser: (
        "Sign-in started in another browser",
        "This sign-in was started in a different browser. Start again from the sign-in page in this browser.",
        "The response arrived in a browser that did not start the sign-in (possible login CSRF)."),
    SamlErrorCode.wrong_connection: (
        "Wrong sign-in address",
        "This response was sent to the wrong address. Start again from the sign-in page.",
        "The response was posted to another connection's ACS URL."),
    SamlErrorCode.connection_off: (
        "Single sign-on is off",
        "Single sign-on isn't turned on for this workspace. Sign in with your email and password.",
        "Turn SSO on in Settings → Security after a successful test."),
    SamlErrorCode.not_configured: (
        "Single sign-on isn't set up",
        "Single sign-on for this workspace isn't set up yet. Contact an admin of your workspace.",
        "Give Gatehouse the IdP metadata (URL, XML or manual fields) first."),
    SamlErrorCode.metadata_not_fetched: (
        "Metadata not fetched yet",
        "Single sign-on for this workspace is being changed. Try again in a few minutes.",
        "The metadata URL was changed while this test was running and hasn't delivered yet (or its fetch "
        "failed), so the test can't count for what the URL will bring. When step 3 shows the fetched metadata, "
        "test again."),
    SamlErrorCode.status_not_success: (
        "The identity provider refused the sign-in",
        "Your identity provider did not sign you in. You may not be assigned to the Gatehouse app; "
        "contact an admin of your workspace.",
        "Assign the user to the SAML app in the IdP, then try again."),
    SamlErrorCode.signature_missing: (
        "Assertion not signed",
        "Your identity provider's response could not be trusted. Contact an admin of your workspace.",
        "Gatehouse requires signed assertions. In the IdP's SAML settings, sign the assertion (RSA-SHA256)."),
    SamlErrorCode.signature_invalid: (
        "Signature not valid",
        "Your identity provider's response could not be trusted. Contact an admin of your workspace.",
        "The assertion is not signed by a certificate Gatehouse knows. Refresh the IdP metadata or upload the "
        "IdP's current signing certificate."),
    SamlErrorCode.wrong_audience: (
        "Wrong audience",
        "Your identity provider is set up for a different application. Contact an admin of your workspace.",
        "Set the Audience URI (SP Entity ID) to the value shown. In the Okta catalog app, paste the Connection ID "
        "into Sign On → Advanced Sign-on Settings."),
    SamlErrorCode.wrong_recipient: (
        "Wrong recipient",
        "Your identity provider is set up for a different address. Contact an admin of your workspace.",
        "Set the Single sign-on URL (ACS / Recipient) to the value shown. In the Okta catalog app, paste the "
        "Connection ID into Sign On → Advanced Sign-on Settings."),
    SamlErrorCode.wrong_destination: (
        "Wrong destination",
        "Your identity provider is set up for a different address. Contact an admin of your workspace.",
        "Set the Destination / ACS URL to the value shown (Okta: Sign On → Advanced Sign-on Settings)."),
    SamlErrorCode.wrong_issuer: (
        "Unknown identity provider",
        "This response came from an identity provider this workspace doesn't use. Contact an admin.",
        "The Issuer differs from the IdP entity ID Gatehouse has; refresh the IdP metadata."),
    SamlErrorCode.time_window: (
        "Response outside its time window",
        "The sign-in response has expired or isn't valid yet. Try again; if it keeps happening, tell your admin.",
        "The clocks of the IdP and Gatehouse differ by more than allowed, or the response is too old."),
    SamlErrorCode.replay: (
        "Response already used",
        "This sign-in response was already used. Start again from the sign-in page.",
        "Each assertion is accepted once; the browser re-posted an old response."),
    SamlErrorCode.nameid_not_email: (
        "NameID is not an email",
        "Your identity provider didn't send your email address. Contact an admin of your workspace.",
        "Set Application username format to Email (Okta) or the NameID format to emailAddress."),
    SamlErrorCode.domain_not_authorized: (
        "Email domain not authorized",
        "Your email's domain isn't authorized for this workspace. Contact an admin of your workspace.",
        "Verify the domain in Settings → Security → Authorized domains."),
    SamlErrorCode.user_unknown: (
        "No account for this email",
        "There's no account for you in this workspace. Ask an admin of your workspace to invite you.",
        "Invite the user, provision them by SCIM, or turn on just-in-time creation."),
    SamlErrorCode.user_deactivated: (
        "Account deactivated",
        "Your account has been deactivated. Contact an admin of your workspace.",
        "Reactivate the member in Settings → Members."),
    SamlErrorCode.concurrent: (
        "Signed in twice at once",
        "Your account was being set up by another sign-in at the same moment. Start again from the sign-in page.",
        "Two first sign-ins of the same new person arrived together; the second one can simply start again."),
    SamlErrorCode.invalid: (
        "Response not valid",
        "Your identity provider's response was not valid. Contact an admin of your workspace.",
        "See the reason below and check the SAML app's settings."),
}

# Refusals on policy grounds (who may sign in) are 403; broken responses are 400.
POLICY_CODES = {SamlErrorCode.domain_not_authorized, SamlErrorCode.user_unknown, SamlErrorCode.user_deactivated}


@dataclass
class SamlError(Exception):
    code: SamlErrorCode
    reason: str = ""                               # the technical reason (library message, trace)
    details: dict = field(default_factory=dict)    # expected / received / clock_difference ...
    email: str | None = None
    connection: object | None = None               # the SsoConnection, once known (for the log)
    request: object | None = None                  # the SamlRequest, once known (test or not)

    @property
    def title(self) -> str:
        return _TEXT[self.code][0]

    @property
    def member_message(self) -> str:
        return _TEXT[self.code][1]

    @property
    def fix(self) -> str:
        return _TEXT[self.code][2]

    @property
    def status(self) -> int:
        return 403 if self.code in POLICY_CODES else 400

    def __str__(self) -> str:
        return f"{self.code.value}: {self.reason or self.title}"


def describe(code: str) -> tuple[str, str]:
    """(title, fix) for a stored error code; unknown codes read as generic."""
    try:
        title, _, fix = _TEXT[SamlErrorCode(code)]
    except ValueError:
        title, fix = _TEXT[SamlErrorCode.invalid][0], _TEXT[SamlErrorCode.invalid][2]
    return title, fix
