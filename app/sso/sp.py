"""The service provider's side of a SAML connection: our URLs, python3-saml's settings for the
connection (parsed once per connection version), our SP metadata, and the clock skew we allow.
The protocol itself is app.sso.saml."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from app.models import SsoConnection
from app.sso.errors import SamlError, SamlErrorCode as E

EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def sp_urls(connection_id: str) -> dict[str, str]:
    base = current_app.config["BASE_URL"]
    prefix = f"{base}/sso/saml/{connection_id}"
    return {"entity_id": f"{prefix}/metadata", "acs_url": f"{prefix}/acs", "metadata_url": f"{prefix}/metadata",
            "login_url": f"{prefix}/login"}


def request_data(path: str, *, get: dict | None = None, post: dict | None = None) -> dict:
    """python3-saml's view of the request, from BASE_URL (not request.host), so
    Destination/Recipient checks hold behind a proxy and on non-default ports."""
    base = urlsplit(current_app.config["BASE_URL"])
    return {"https": "on" if base.scheme == "https" else "off", "http_host": base.netloc, "script_name": path,
            "get_data": dict(get or {}), "post_data": dict(post or {})}


def settings_dict(conn: SsoConnection) -> dict:
    urls = sp_urls(conn.connection_id)
    certs = [c.pem for c in conn.certificates]
    idp: dict = {"entityId": conn.idp_entity_id or "", "singleSignOnService": {
        "url": conn.sso_url or "", "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT}}
    if len(certs) == 1:
        idp["x509cert"] = certs[0]
    elif certs:
        idp["x509certMulti"] = {"signing": certs}
    return {
        "strict": True,
        "debug": False,
        "sp": {"entityId": urls["entity_id"],
               "assertionConsumerService": {"url": urls["acs_url"],
                                            "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
               "NameIDFormat": EMAIL_FORMAT},
        "idp": idp,
        "security": {
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,       # Okta signs the assertion; the response signature is optional
            "rejectDeprecatedAlgorithm": True,  # no RSA-SHA1 / SHA1 digests
            "wantAttributeStatement": False,    # NameID-only responses are fine: the NameID is the email
            "wantNameId": True,
            "requestedAuthnContext": False,     # let the IdP decide how (MFA, passwordless ...)
            "authnRequestsSigned": False,
        },
    }


_settings_cache: dict[tuple, OneLogin_Saml2_Settings] = {}


def saml_settings(conn: SsoConnection) -> OneLogin_Saml2_Settings:
    """Parsed settings per connection version, so the ACS neither loads the
    certificates nor re-parses them on every sign-in. Every change to a
    connection or its certificates bumps `updated_at` (app.sso.connections),
    which makes a new key; each process keeps its own small cache."""
    key = (current_app.config["BASE_URL"], conn.id, conn.connection_id, conn.idp_entity_id, conn.sso_url,
           conn.updated_at)
    cached = _settings_cache.get(key)
    if cached is None:
        if len(_settings_cache) > 256:
            _settings_cache.clear()
        try:
            cached = OneLogin_Saml2_Settings(settings_dict(conn), sp_validation_only=True)
        except OneLogin_Saml2_Error as exc:  # e.g. an IdP URL the library refuses: explained, never a 500
            raise SamlError(E.not_configured, f"python3-saml refused the settings: {exc}") from exc
        _settings_cache[key] = cached
    return cached


def settings_problem(conn: SsoConnection) -> str | None:
    """Why python3-saml would refuse this connection's settings, in plain words (None if it accepts them)."""
    try:
        OneLogin_Saml2_Settings(settings_dict(conn))  # the IdP part too
    except OneLogin_Saml2_Error as exc:
        reason = str(exc)
        if "idp_sso_url_invalid" in reason:
            return "The IdP single sign-on URL is not a valid URL (use a full https:// URL with a domain name)."
        if "sp_acs_url_invalid" in reason or "sp_entityId" in reason:
            return "Gatehouse's BASE_URL is not accepted by the SAML library (it needs a domain name or an IP)."
        return f"The SAML settings were refused ({reason})."
    return None


def sp_metadata_xml(conn: SsoConnection) -> str:
    metadata = saml_settings(conn).get_sp_metadata()
    return metadata.decode() if isinstance(metadata, bytes) else metadata


def clock_skew() -> int:
    return int(current_app.config.get("SAML_CLOCK_SKEW_SECONDS", 120))
