"""python3-saml with compiled-once XSDs and XPaths (app.sso.checks): the same
contract as the library's own `validate_xml` and `query`, which they replace process-wide."""
from __future__ import annotations

import threading

import pytest
from lxml import etree
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from app.sso import checks
from tests.support.saml_idp import TestIdp, encode

PROTOCOL = "saml-schema-protocol-2.0.xsd"


@pytest.fixture(scope="module")
def signed_response() -> bytes:
    idp = TestIdp(entity_id="https://idp.example.test/metadata", sso_url="https://idp.example.test/sso")
    root = idp.response(audience="https://sp.example.test/metadata", acs_url="https://sp.example.test/acs",
                        in_response_to="_req", email="ada@acme.test")
    return etree.tostring(root)


def test_the_app_installs_them_into_python3_saml(app):
    assert OneLogin_Saml2_XML.validate_xml is checks._library_validate_xml
    assert OneLogin_Saml2_XML.query is checks._library_query


def test_same_contract_as_the_library(signed_response):
    shipped = checks.SHIPPED["validate_xml"]
    broken = signed_response.replace(b"<saml:Issuer", b"<saml:Unexpected", 1).replace(
        b"</saml:Issuer>", b"</saml:Unexpected>", 1)
    for document, expected in ((signed_response, etree._Element), (broken, "invalid_xml"),
                               (b"<not xml", "unloaded_xml")):
        ours, theirs = checks._library_validate_xml(document, PROTOCOL), shipped(document, PROTOCOL)
        if expected is etree._Element:
            assert isinstance(ours, etree._Element) and isinstance(theirs, etree._Element)
        else:
            assert ours == theirs == expected


def test_doctype_and_text_input_as_the_library_does(signed_response):
    shipped = checks.SHIPPED["validate_xml"]
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>' + signed_response
    assert checks._library_validate_xml(doctype, PROTOCOL) == shipped(doctype, PROTOCOL) == "unloaded_xml"
    as_text = signed_response.decode()
    assert isinstance(checks._library_validate_xml(as_text, PROTOCOL), etree._Element)
    assert isinstance(shipped(as_text, PROTOCOL), etree._Element)


def test_metadata_schema_too(signed_response):
    """python3-saml also checks IdP metadata with it (settings.validate_metadata)."""
    idp = TestIdp(entity_id="https://idp.example.test/metadata", sso_url="https://idp.example.test/sso")
    metadata = idp.metadata()
    for document in (metadata, signed_response):
        ours = checks._library_validate_xml(document, "saml-schema-metadata-2.0.xsd")
        theirs = checks.SHIPPED["validate_xml"](document, "saml-schema-metadata-2.0.xsd")
        assert type(ours) is type(theirs)
    assert isinstance(checks._library_validate_xml(metadata, "saml-schema-metadata-2.0.xsd"), etree._Element)
    assert checks._library_validate_xml(signed_response, "saml-schema-metadata-2.0.xsd") == "invalid_xml"


def test_the_document_validate_schema_found_valid_is_not_validated_again(signed_response, monkeypatch):
    """The ACS checks the schema first, for its diagnostics; python3-saml's check of that
    same document, right after, is skipped once. Any other document is still validated."""
    document = etree.fromstring(signed_response)
    checks.validate_schema(document)
    validated = []

    class Counting:
        def __init__(self, schema):
            self.schema = schema

        def validate(self, xml):
            validated.append(xml)
            return self.schema.validate(xml)

        def __getattr__(self, name):  # error_log
            return getattr(self.schema, name)

    real = checks.compiled_schema
    monkeypatch.setattr(checks, "compiled_schema", lambda name: Counting(real(name)))
    assert checks._library_validate_xml(document, PROTOCOL) is document and validated == []
    assert checks._library_validate_xml(document, PROTOCOL) is document and validated == [document]  # once

    copy = etree.fromstring(signed_response)
    assert checks._library_validate_xml(copy, PROTOCOL) is copy and validated == [document, copy]
    broken = etree.fromstring(signed_response)
    broken.insert(1, etree.Element("{urn:oasis:names:tc:SAML:2.0:protocol}Bogus"))
    with pytest.raises(checks.SamlError):
        checks.validate_schema(broken)  # found invalid: not marked, so the library refuses it too
    assert checks._library_validate_xml(broken, PROTOCOL) == "invalid_xml"


def test_compiled_once_per_thread():
    first = checks.compiled_schema(PROTOCOL)
    assert checks.compiled_schema(PROTOCOL) is first
    other = []
    thread = threading.Thread(target=lambda: other.append(checks.compiled_schema(PROTOCOL)))
    thread.start()
    thread.join()
    assert other[0] is not first  # lxml validators are not shared between threads


# --- XPaths -------------------------------------------------------------------------------------

SP_ENTITY, SP_ACS = "https://sp.example.test/metadata", "https://sp.example.test/acs"


def test_queries_answer_as_the_library_does(signed_response):
    """The query forms python3-saml uses: absolute, descendant, from a context node, with $tagid."""
    document = etree.fromstring(signed_response)
    assertion_id = document.find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion").get("ID")
    signature = document.xpath("//ds:Signature", namespaces=checks.NS)[0]
    cases = [
        (document, "/samlp:Response/saml:Issuer", None, None),
        (document, "//saml:Assertion", None, None),
        (document, "/samlp:Response/saml:Assertion[@ID=$tagid]/saml:Subject/saml:NameID", None, assertion_id),
        (document, "/samlp:Response/saml:Assertion[@ID=$tagid]/saml:Conditions", None, "_not-this-one"),
        (document, ".//ds:Reference", signature, None),
        (document, "/samlp:Response/saml:EncryptedAssertion", None, None),
        (document, OneLogin_Saml2_Utils.ASSERTION_SIGNATURE_XPATH, None, None),
    ]
    shipped = checks.SHIPPED["query"]
    for dom, query, context, tagid in cases:
        ours, theirs = checks._library_query(dom, query, context, tagid), shipped(dom, query, context, tagid)
        assert ours == theirs, query  # the same nodes, in the same order
    assert checks._library_query(*cases[2][:2], None, cases[2][3])  # the $tagid case does find the NameID


def _process(xml: bytes, settings, *, shipped: bool) -> tuple:
    """python3-saml's whole validation and read-out, with its own functions or ours."""
    checks.install_library_caches(shipped=shipped)
    try:
        response = OneLogin_Saml2_Response(settings, encode(xml))
        request = {"https": "on", "http_host": "sp.example.test", "script_name": "/acs", "post_data": {}}
        valid = response.is_valid(request, "_req")
        return (valid, response.get_error(), response.get_nameid() if valid else None,
                response.get_attributes() if valid else None, response.get_assertion_id() if valid else None)
    finally:
        checks.install_library_caches()


def test_python3_saml_decides_the_same_with_the_caches(signed_response):
    """Valid, wrapped (a second, unsigned assertion), NameID altered after signing, wrong
    audience: the library's verdict, error and read-out are the same either way."""
    idp = TestIdp(entity_id="https://idp.example.test/metadata", sso_url="https://idp.example.test/sso")
    settings = OneLogin_Saml2_Settings({
        "strict": True,
        "sp": {"entityId": SP_ENTITY, "assertionConsumerService": {"url": SP_ACS}},
        "idp": {"entityId": idp.entity_id, "singleSignOnService": {"url": idp.sso_url},
                "x509cert": idp.cert_pem.decode()},
        "security": {"wantAssertionsSigned": True},
    }, sp_validation_only=True)
    good = etree.tostring(idp.response(audience=SP_ENTITY, acs_url=SP_ACS, in_response_to="_req",
                                       email="ada@acme.test"))
    altered = good.replace(b">ada@acme.test<", b">eve@acme.test<", 1)
    root = etree.fromstring(good)
    evil = etree.fromstring(etree.tostring(root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion")))
    evil.set("ID", "_evil")
    root.insert(2, evil)
    wrapped = etree.tostring(root)
    wrong_audience = etree.tostring(idp.response(audience="https://other.example.test", acs_url=SP_ACS,
                                                 in_response_to="_req", email="ada@acme.test"))
    outcomes = {}
    for name, xml in (("good", good), ("altered", altered), ("wrapped", wrapped), ("audience", wrong_audience)):
        outcomes[name] = _process(xml, settings, shipped=False)
        assert outcomes[name] == _process(xml, settings, shipped=True), name
    assert outcomes["good"][0] is True and outcomes["good"][2] == "ada@acme.test"
    assert not any(outcomes[name][0] for name in ("altered", "wrapped", "audience"))


def test_xpaths_compiled_once_per_thread_and_bounded(signed_response, monkeypatch):
    document = etree.fromstring(signed_response)
    checks._library_query(document, "/samlp:Response/saml:Issuer")
    cache = checks._compiled.xpaths
    compiled = cache["/samlp:Response/saml:Issuer"]
    checks._library_query(document, "/samlp:Response/saml:Issuer")
    assert cache["/samlp:Response/saml:Issuer"] is compiled
    other = []
    thread = threading.Thread(target=lambda: (checks._library_query(document, "/samlp:Response/saml:Issuer"),
                                              other.append(checks._compiled.xpaths)))
    thread.start()
    thread.join()
    assert other[0] is not cache  # each thread compiles its own
    monkeypatch.setattr(checks, "MAX_CACHED_XPATHS", len(cache))
    assert checks._library_query(document, "/samlp:Response/@ID") == [document.get("ID")]
    assert "/samlp:Response/@ID" not in cache  # full: answered, not kept
