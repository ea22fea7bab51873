"""The checks python3-saml leaves to the service provider, and the diagnostics
that turn any refusal into "expected vs received" (see app.sso.saml)."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import threading
from pathlib import Path

import onelogin.saml2
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as ValidationError
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from app.memo import memoized
from app.models import SsoConnection, utcnow
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.metadata import fingerprint_of

NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#"}


SCHEMA_DIR = Path(onelogin.saml2.__file__).parent / "schemas"
PROTOCOL_XSD = "saml-schema-protocol-2.0.xsd"
_compiled = threading.local()  # lxml validators are not shared between threads


def compiled_schema(name: str) -> etree.XMLSchema:
    """One of python3-saml's bundled XSDs, compiled once per thread."""
    schema = getattr(_compiled, name, None)
    if schema is None:
        with (SCHEMA_DIR / name).open("rb") as xsd:
            schema = etree.XMLSchema(etree.parse(xsd))
        setattr(_compiled, name, schema)
    return schema


def validate_schema(document) -> None:
    """The SAML protocol schema check, first, so a refusal can say which element is wrong
    (python3-saml's own check, in strict mode, only says "invalid_xml"). python3-saml then
    skips its check of this very document (`_library_validate_xml`): once is enough."""
    schema = compiled_schema(PROTOCOL_XSD)
    if not schema.validate(document):
        first = schema.error_log.last_error
        raise SamlError(E.malformed, f"not a valid SAML 2.0 Response (schema): {first.message if first else ''}"[:300])
    _compiled.valid_document = document


def _library_validate_xml(xml, schema: str, debug: bool = False):
    """`OneLogin_Saml2_XML.validate_xml` with its contract (the parsed document,
    or "unloaded_xml" / "invalid_xml"), minus re-reading and compiling the XSD
    on every call: that compile was 2-3 ms of every sign-in, about half of
    python3-saml's whole validation. The document `validate_schema` has just
    found valid (the same object, in this thread) is not validated again."""
    if schema == PROTOCOL_XSD and xml is getattr(_compiled, "valid_document", None):
        _compiled.valid_document = None
        return xml
    try:
        xml = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:  # noqa: BLE001 - the library's own contract: any parse failure is "unloaded_xml"
        return "unloaded_xml"
    return xml if compiled_schema(schema).validate(xml) else "invalid_xml"


MAX_CACHED_XPATHS = 256


def _library_query(dom, query: str, context=None, tagid=None):
    """`OneLogin_Saml2_XML.query` with each XPath compiled once per thread.

    python3-saml evaluates about 40 XPaths per response and lxml compiles each
    one anew: 0.5 ms, a third of the validation once the schema is cached. Its
    queries are constant strings, with the element id passed as the `$tagid`
    variable, so the cache stays small; it is bounded all the same."""
    xpaths = _compiled.__dict__.setdefault("xpaths", {})
    xpath = xpaths.get(query)
    if xpath is None:
        xpath = etree.XPath(query, namespaces=OneLogin_Saml2_Constants.NSMAP)
        if len(xpaths) < MAX_CACHED_XPATHS:
            xpaths[query] = xpath
    source = dom if context is None else context
    return xpath(source) if tagid is None else xpath(source, tagid=tagid)


# What python3-saml ships, kept for the tests and bench/acs.py ("as installed").
_OURS = {"validate_xml": _library_validate_xml, "query": _library_query}
SHIPPED = {name: OneLogin_Saml2_XML.__dict__[name].__func__ for name in _OURS}


def install_library_caches(shipped: bool = False) -> None:
    """Process-wide, once at start-up: python3-saml calls these static methods by
    class name. (`shipped=True` puts the library's own back, for comparisons.)"""
    for name, function in (SHIPPED if shipped else _OURS).items():
        setattr(OneLogin_Saml2_XML, name, staticmethod(function))


def _first(root, path: str):
    found = _library_query(root, path)  # compiled once, as python3-saml's own (same prefixes)
    return found[0] if found else None


def summarize(document) -> dict:
    """What the response claims (signed or not), for diagnostics and the short trace."""
    def text(xpath):
        node = _first(document, xpath)
        return (node.text or "").strip() if node is not None else None

    def attr(xpath, name):
        node = _first(document, xpath)
        return node.get(name) if node is not None else None

    cert = text("/samlp:Response/saml:Assertion/ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate") or \
        text("/samlp:Response/ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate")
    fingerprint = None
    if cert:
        try:
            fingerprint = fingerprint_of(base64.b64decode("".join(cert.split())))
        except (binascii.Error, ValueError):
            fingerprint = "(unreadable certificate)"
    return {
        "issuer": text("/samlp:Response/saml:Assertion/saml:Issuer") or text("/samlp:Response/saml:Issuer"),
        "in_response_to": document.get("InResponseTo"),
        "destination": document.get("Destination"),
        "issue_instant": document.get("IssueInstant"),
        "assertion_id": attr("/samlp:Response/saml:Assertion", "ID"),
        "audiences": [(n.text or "").strip() for n in _library_query(
            document, "/samlp:Response/saml:Assertion/saml:Conditions/saml:AudienceRestriction/saml:Audience")],
        "recipient": attr("/samlp:Response/saml:Assertion/saml:Subject/saml:SubjectConfirmation/"
                          "saml:SubjectConfirmationData", "Recipient"),
        "not_before": attr("/samlp:Response/saml:Assertion/saml:Conditions", "NotBefore"),
        "not_on_or_after": attr("/samlp:Response/saml:Assertion/saml:Conditions", "NotOnOrAfter"),
        "scd_not_on_or_after": attr("/samlp:Response/saml:Assertion/saml:Subject/saml:SubjectConfirmation/"
                                    "saml:SubjectConfirmationData", "NotOnOrAfter"),
        "nameid": text("/samlp:Response/saml:Assertion/saml:Subject/saml:NameID"),
        "status": attr("/samlp:Response/samlp:Status/samlp:StatusCode", "Value"),
        "signing_fingerprint": fingerprint,
    }


@memoized(max_length=64, maxsize=256)  # a sign-in reads its NotOnOrAfter twice (time window, replay cache)
def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), dt.timezone.utc)
    except Exception:  # noqa: BLE001 - an unparsable time is simply not a valid window
        return None


def check_time_window(summary: dict, skew_seconds: int) -> None:
    now, skew = utcnow(), dt.timedelta(seconds=skew_seconds)
    issued = parse_time(summary["issue_instant"])

    def refused(reason: str) -> SamlError:
        return SamlError(E.time_window, reason, {
            "clock_difference_seconds": int((issued - now).total_seconds()) if issued else None,
            "allowed_skew_seconds": skew_seconds, "not_before": summary["not_before"],
            "not_on_or_after": summary["not_on_or_after"], "received_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")})

    not_before, not_after = parse_time(summary["not_before"]), parse_time(summary["not_on_or_after"])
    scd_after = parse_time(summary["scd_not_on_or_after"])
    if issued is not None and issued > now + skew:
        raise refused("IssueInstant is in the future")
    if not_before is not None and not_before > now + skew:
        raise refused("the assertion is not valid yet (NotBefore)")
    for limit in (not_after, scd_after):
        if limit is not None and limit <= now - skew:  # (a limit in the year 9999 is valid XML: no limit + skew)
            raise refused("the assertion has expired (NotOnOrAfter)")


def check_recipients(summary: dict, urls: dict) -> None:
    if urls["entity_id"] not in summary["audiences"]:
        raise SamlError(E.wrong_audience, "Audience missing or different",
                        {"expected": urls["entity_id"], "received": ", ".join(summary["audiences"]) or "(none)"})
    if summary["recipient"] != urls["acs_url"]:
        raise SamlError(E.wrong_recipient, "Recipient differs from our ACS URL",
                        {"expected": urls["acs_url"], "received": summary["recipient"] or "(none)"})
    if summary["destination"] is not None and summary["destination"] != urls["acs_url"]:
        raise SamlError(E.wrong_destination, "Destination differs from our ACS URL",
                        {"expected": urls["acs_url"], "received": summary["destination"]})


LIBRARY_CODES = {
    ValidationError.STATUS_CODE_IS_NOT_SUCCESS: E.status_not_success,
    ValidationError.MISSING_STATUS: E.status_not_success,
    ValidationError.MISSING_STATUS_CODE: E.status_not_success,
    ValidationError.NO_SIGNED_ASSERTION: E.signature_missing,
    ValidationError.NO_SIGNATURE_FOUND: E.signature_missing,
    ValidationError.INVALID_SIGNATURE: E.signature_invalid,
    ValidationError.WRONG_AUDIENCE: E.wrong_audience,
    ValidationError.WRONG_DESTINATION: E.wrong_destination,
    ValidationError.EMPTY_DESTINATION: E.wrong_destination,
    ValidationError.WRONG_SUBJECTCONFIRMATION: E.wrong_recipient,
    ValidationError.WRONG_ISSUER: E.wrong_issuer,
    ValidationError.ISSUER_NOT_FOUND_IN_ASSERTION: E.wrong_issuer,
    ValidationError.ASSERTION_TOO_EARLY: E.time_window,
    ValidationError.ASSERTION_EXPIRED: E.time_window,
    ValidationError.SESSION_EXPIRED: E.time_window,
    ValidationError.WRONG_INRESPONSETO: E.in_response_to_mismatch,
    ValidationError.INVALID_XML_FORMAT: E.malformed,
}


def library_error(exc: Exception, summary: dict, conn: SsoConnection, urls: dict, skew_seconds: int
                  ) -> SamlError:
    """python3-saml's refusal as a typed error, with what we expected and what the response says."""
    code = LIBRARY_CODES.get(getattr(exc, "code", None), E.invalid)
    details: dict = {}
    if code in (E.signature_invalid, E.signature_missing):
        details = {"expected": ", ".join(c.fingerprint for c in conn.certificates) or "(no certificate)",
                   "received": summary["signing_fingerprint"] or "(no certificate in the signature)"}
    elif code is E.wrong_issuer:
        details = {"expected": conn.idp_entity_id, "received": summary["issuer"] or "(none)"}
    elif code is E.wrong_audience:
        details = {"expected": urls["entity_id"], "received": ", ".join(summary["audiences"]) or "(none)"}
    elif code in (E.wrong_destination, E.wrong_recipient):
        details = {"expected": urls["acs_url"],
                   "received": summary["destination" if code is E.wrong_destination else "recipient"] or "(none)"}
    elif code is E.status_not_success:
        details = {"expected": "urn:oasis:names:tc:SAML:2.0:status:Success", "received": summary["status"]}
    elif code is E.time_window:
        issued = parse_time(summary["issue_instant"])
        details = {"clock_difference_seconds": int((issued - utcnow()).total_seconds()) if issued else None,
                   "allowed_skew_seconds": skew_seconds}
    return SamlError(code, str(exc)[:300], details)
