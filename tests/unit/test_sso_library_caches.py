"""python3-saml's schema check with the compiled-once XSDs (app.sso.checks): the same
contract as the library's own `validate_xml`, which it replaces process-wide."""
from __future__ import annotations

import threading

import pytest
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from app.sso import checks
from tests.support.saml_idp import TestIdp

PROTOCOL = "saml-schema-protocol-2.0.xsd"


@pytest.fixture(scope="module")
def signed_response() -> bytes:
    idp = TestIdp(entity_id="https://idp.example.test/metadata", sso_url="https://idp.example.test/sso")
    root = idp.response(audience="https://sp.example.test/metadata", acs_url="https://sp.example.test/acs",
                        in_response_to="_req", email="ada@acme.test")
    return etree.tostring(root)


def test_the_app_installs_it_into_python3_saml(app):
    assert OneLogin_Saml2_XML.validate_xml is checks._library_validate_xml


def test_same_contract_as_the_library(signed_response):
    shipped = checks.SHIPPED_VALIDATE_XML
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
    shipped = checks.SHIPPED_VALIDATE_XML
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
        theirs = checks.SHIPPED_VALIDATE_XML(document, "saml-schema-metadata-2.0.xsd")
        assert type(ours) is type(theirs)
    assert isinstance(checks._library_validate_xml(metadata, "saml-schema-metadata-2.0.xsd"), etree._Element)
    assert checks._library_validate_xml(signed_response, "saml-schema-metadata-2.0.xsd") == "invalid_xml"


def test_compiled_once_per_thread():
    first = checks.compiled_schema(PROTOCOL)
    assert checks.compiled_schema(PROTOCOL) is first
    other = []
    thread = threading.Thread(target=lambda: other.append(checks.compiled_schema(PROTOCOL)))
    thread.start()
    thread.join()
    assert other[0] is not first  # lxml validators are not shared between threads
