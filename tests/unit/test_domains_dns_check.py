"""dns_check against a real DNS server (dnslib, in process): what admins are told."""
import pytest

from app.domains.dns_check import (Outcome, check_challenge, explain, make_resolver, matches, normalize_txt,
                                   parse_nameservers)

NAME = "_gatehouse-challenge.acme.test"
EXPECTED = "gatehouse-domain-verification=abc123"


@pytest.fixture
def zone(dns_server):
    dns_server.reset()
    return dns_server


@pytest.fixture
def resolver(zone):
    return make_resolver(zone.nameservers, timeout=1.0)


def test_parse_nameservers():
    assert parse_nameservers("127.0.0.1:5353, 10.0.0.2,[::1]:53, [2001:db8::1]") == [
        ("127.0.0.1", 5353), ("10.0.0.2", 53), ("::1", 53), ("2001:db8::1", 53)]
    assert parse_nameservers(None) == [] and parse_nameservers("") == []
    with pytest.raises(ValueError, match="bad port"):
        parse_nameservers("127.0.0.1:99999")


@pytest.mark.parametrize("found", [
    "gatehouse-domain-verification=abc123", '"gatehouse-domain-verification=abc123"',
    "  GATEHOUSE-Domain-Verification = ABC123 ", "'gatehouse-domain-verification=abc123'",
])
def test_values_match_despite_quotes_spaces_and_case(found):
    assert matches([found], "abc123")


def test_other_values_do_not_match():
    assert not matches(["gatehouse-domain-verification=abc1234", "abc123", "v=spf1 -all"], "abc123")
    assert normalize_txt('"a = b"') == "a=b"


def test_found_among_other_records(zone, resolver):
    zone.txt[NAME] = ["v=spf1 -all", EXPECTED]
    result = check_challenge(NAME, "abc123", resolver)
    assert result.outcome is Outcome.found
    assert result.records == ("v=spf1 -all", EXPECTED)


def test_split_strings_are_joined(zone, resolver):
    zone.txt[NAME] = [["gatehouse-domain-", "verification=", "abc123"]]
    assert check_challenge(NAME, "abc123", resolver).outcome is Outcome.found
    long_value = "x" * 600  # over 255 bytes: the zone splits it into 255-byte strings
    zone.txt[NAME] = ["gatehouse-domain-verification=" + long_value]
    result = check_challenge(NAME, long_value, resolver)
    assert result.outcome is Outcome.found and result.records == ("gatehouse-domain-verification=" + long_value,)


def test_wrong_value_says_what_was_found(zone, resolver):
    zone.txt[NAME] = ["gatehouse-domain-verification=wrong"]
    result = check_challenge(NAME, "abc123", resolver)
    assert result.outcome is Outcome.mismatch and result.records == ("gatehouse-domain-verification=wrong",)
    assert "none is gatehouse-domain-verification=abc123" in explain(result, EXPECTED, 1)


def test_nxdomain_no_answer_servfail_timeout_told_apart(zone, resolver):
    nx = check_challenge(NAME, "abc123", resolver)
    assert nx.outcome is Outcome.nxdomain
    assert "does not exist in DNS (NXDOMAIN)" in explain(nx, EXPECTED, 1)
    zone.txt[NAME] = []  # the name exists, without TXT records
    empty = check_challenge(NAME, "abc123", resolver)
    assert empty.outcome is Outcome.no_answer and "has no TXT record" in explain(empty, EXPECTED, 1)
    zone.servfail.add(NAME)
    failed = check_challenge(NAME, "abc123", resolver)
    assert failed.outcome is Outcome.servfail and "SERVFAIL" in explain(failed, EXPECTED, 1)
    zone.silent.add(NAME)
    timed_out = check_challenge(NAME, "abc123", make_resolver(zone.nameservers, timeout=0.5))
    assert timed_out.outcome is Outcome.timeout
    assert explain(timed_out, EXPECTED, 0.5) == "No DNS server answered within 0.5 seconds (timeout). We will try again."
    assert not timed_out.outcome.is_definitive and nx.outcome.is_definitive


def test_cname_is_followed(zone, resolver):
    zone.cname[NAME] = "acme.verify.dnsprovider.test"
    zone.txt["acme.verify.dnsprovider.test"] = [EXPECTED]
    result = check_challenge(NAME, "abc123", resolver)
    assert result.outcome is Outcome.found and result.cnames == ("acme.verify.dnsprovider.test",)
    assert "following CNAME to acme.verify.dnsprovider.test" in explain(result, EXPECTED, 1)


def test_dangling_cname_and_loops(zone, resolver):
    zone.cname[NAME] = "gone.dnsprovider.test"
    result = check_challenge(NAME, "abc123", resolver)
    assert result.outcome is Outcome.nxdomain
    assert explain(result, EXPECTED, 1).startswith("gone.dnsprovider.test does not exist")
    zone.cname["gone.dnsprovider.test"] = NAME
    assert check_challenge(NAME, "abc123", resolver).outcome is Outcome.error


def test_unreachable_nameserver_is_a_timeout():
    resolver = make_resolver("127.0.0.1:9", timeout=0.5)  # discard port: nobody answers
    assert check_challenge(NAME, "abc123", resolver).outcome in (Outcome.timeout, Outcome.servfail)
