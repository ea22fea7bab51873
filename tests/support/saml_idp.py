"""A real SAML IdP for tests: keys made here, responses signed with xmlsec.

Built on RECIPES.md section 1 (verified against python3-saml), with the knobs
the attack tests need: the IdP's clock, a Response-level signature, extra
attributes, SessionNotOnOrAfter, and hooks to tamper with the signed XML.
"""
from __future__ import annotations

import base64
import datetime as dt
import uuid
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization as ser
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol", "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
      "ds": "http://www.w3.org/2000/09/xmldsig#"}
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


def make_key_and_cert(cn: str = "test-idp", days: int = 365) -> tuple[bytes, bytes]:
    key, now = rsa.generate_private_key(public_exponent=65537, key_size=2048), dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return (key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()),
            cert.public_bytes(ser.Encoding.PEM))


def cert_b64(cert_pem: bytes) -> str:
    return b"".join(cert_pem.strip().splitlines()[1:-1]).decode()


def idp_metadata(entity_id: str, sso_url: str, *cert_pems: bytes) -> str:
    keys = "".join(f"""<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ds:X509Data><ds:X509Certificate>{cert_b64(pem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
  </md:KeyDescriptor>""" for pem in cert_pems)
    return f"""<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
 <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{keys}
  <md:NameIDFormat>{EMAIL}</md:NameIDFormat>
  <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso_url}"/>
 </md:IDPSSODescriptor></md:EntityDescriptor>"""


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sign(element, key_pem: bytes, cert_pem: bytes, element_id: str) -> None:
    sig = xmlsec.template.create(element, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256)
    element.find("saml:Issuer", NS).addnext(sig)  # the schema wants Signature right after Issuer
    ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256, uri="#" + element_id)
    for transform in (xmlsec.Transform.ENVELOPED, xmlsec.Transform.EXCL_C14N):
        xmlsec.template.add_transform(ref, transform)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.tree.add_ids(element, ["ID"])  # else URI="#_id" does not resolve
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    ctx.key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.PEM)
    ctx.sign(sig)


def build_response(*, idp: str, audience: str | None, acs_url: str, in_response_to: str | None, email: str,
                   key_pem: bytes, cert_pem: bytes, now: dt.datetime | None = None, lifetime: int = 300,
                   recipient: str | None = None, destination: str | None = None,
                   status: str = "urn:oasis:names:tc:SAML:2.0:status:Success", attributes: dict | None = None,
                   session_not_on_or_after: dt.datetime | None = None, sign_assertion: bool = True,
                   sign_response: bool = False, nameid_format: str = EMAIL, assertion_id: str | None = None):
    """A signed samlp:Response as an lxml element. `now` is the IdP's clock;
    in_response_to=None makes an unsolicited response."""
    now = now or dt.datetime.now(dt.timezone.utc)
    later, aid = _ts(now + dt.timedelta(seconds=lifetime)), assertion_id or "_" + uuid.uuid4().hex
    rid = "_" + uuid.uuid4().hex
    irt = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    dest = destination if destination is not None else acs_url
    attributes = {"email": [email], **(attributes or {})}
    attrs = "".join(f'<saml:Attribute Name="{name}">' + "".join(
        f"<saml:AttributeValue>{v}</saml:AttributeValue>" for v in values) + "</saml:Attribute>"
        for name, values in attributes.items())
    sess = f' SessionNotOnOrAfter="{_ts(session_not_on_or_after)}"' if session_not_on_or_after else ""
    aud = (f"<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>"
           if audience else "")
    root = etree.fromstring(f"""<samlp:Response xmlns:samlp="{NS['samlp']}" xmlns:saml="{NS['saml']}"
  ID="{rid}" Version="2.0" IssueInstant="{_ts(now)}" Destination="{dest}"{irt}>
 <saml:Issuer>{idp}</saml:Issuer>
 <samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>
 <saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{_ts(now)}"><saml:Issuer>{idp}</saml:Issuer>
  <saml:Subject><saml:NameID Format="{nameid_format}">{email}</saml:NameID>
   <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
    <saml:SubjectConfirmationData{irt} Recipient="{recipient or acs_url}" NotOnOrAfter="{later}"/>
   </saml:SubjectConfirmation>
  </saml:Subject>
  <saml:Conditions NotBefore="{_ts(now - dt.timedelta(seconds=60))}" NotOnOrAfter="{later}">{aud}</saml:Conditions>
  <saml:AuthnStatement AuthnInstant="{_ts(now)}" SessionIndex="{aid}"{sess}><saml:AuthnContext>
   <saml:AuthnContextClassRef>{PASSWORD_PROTECTED}</saml:AuthnContextClassRef>
  </saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attrs}</saml:AttributeStatement>
 </saml:Assertion></samlp:Response>""".encode())
    if sign_assertion:
        _sign(root.find("saml:Assertion", NS), key_pem, cert_pem, aid)
    if sign_response:
        _sign(root, key_pem, cert_pem, rid)
    return root


def encode(root_or_xml) -> str:
    xml = root_or_xml if isinstance(root_or_xml, (bytes, str)) else etree.tostring(root_or_xml)
    return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()


def read_authn_request(redirect_url: str) -> tuple[etree._Element, str | None]:
    """The AuthnRequest and RelayState from an HTTP-Redirect binding URL."""
    query = parse_qs(urlsplit(redirect_url).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    return etree.fromstring(xml), query.get("RelayState", [None])[0]


@dataclass
class TestIdp:
    """One IdP: entity id, SSO URL and a signing key; `metadata()` for the SP."""

    __test__ = False  # not a pytest test class

    entity_id: str = "https://idp.example.test/metadata"
    sso_url: str = "https://idp.example.test/sso"
    keys: tuple[bytes, bytes] = field(default_factory=make_key_and_cert)

    @property
    def cert_pem(self) -> bytes:
        return self.keys[1]

    def metadata(self, *extra_certs: bytes) -> str:
        return idp_metadata(self.entity_id, self.sso_url, self.cert_pem, *extra_certs)

    def response(self, *, audience: str, acs_url: str, in_response_to: str | None, email: str, keys=None, **kw):
        key_pem, cert_pem = keys or self.keys
        return build_response(idp=self.entity_id, audience=audience, acs_url=acs_url, in_response_to=in_response_to,
                              email=email, key_pem=key_pem, cert_pem=cert_pem, **kw)
