"""Look up a domain's challenge TXT record with dnspython and say, in plain
words, what we found. No database here: the batch job runs these in threads.

DNS_NAMESERVERS is `host[:port],...` (IPv6 as `[::1]:53`); unset, the system
resolver is used. NXDOMAIN, "no TXT record", SERVFAIL and timeouts are told
apart, because each needs a different fix from the admin."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from app.models.domains import VALUE_PREFIX

MAX_CNAME_HOPS = 8


class Outcome(str, enum.Enum):
    found = "found"  # the expected value is there
    mismatch = "mismatch"  # TXT records exist, none is ours
    nxdomain = "nxdomain"  # the name does not exist
    no_answer = "no_answer"  # the name exists, no TXT record
    servfail = "servfail"  # the domain's DNS servers failed (often DNSSEC or delegation)
    timeout = "timeout"  # nobody answered in time
    error = "error"  # anything else (bad configuration, refused)

    @property
    def is_definitive(self) -> bool:
        """True when DNS answered; False for failures that say nothing about the record."""
        return self in (Outcome.found, Outcome.mismatch, Outcome.nxdomain, Outcome.no_answer)


@dataclass(frozen=True)
class TxtLookup:
    name: str
    outcome: Outcome
    records: tuple[str, ...] = ()
    cnames: tuple[str, ...] = field(default=())  # the CNAME chain we followed, if any
    detail: str = ""


def parse_nameservers(spec: str | None) -> list[tuple[str, int]]:
    """'127.0.0.1:5353, [::1]:53, 10.0.0.2' -> [(host, port), ...]."""
    servers = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:
            host, port = part, "53"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"DNS_NAMESERVERS: bad port in {part!r}")
        servers.append((host, int(port)))
    return servers


def make_resolver(spec: str | None, timeout: float = 5.0) -> dns.resolver.Resolver:
    servers = parse_nameservers(spec)
    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    resolver.cache = None  # an admin who just fixed the record wants a fresh answer
    return resolver


def normalize_txt(value: str) -> str:
    """Undo what DNS control panels do to a pasted value: quotes, spaces, case."""
    value = value.strip()
    while len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    key, sep, rest = value.partition("=")
    if sep:
        value = f"{key.strip()}={rest.strip()}"
    return value.lower()


def matches(records, expected_value: str) -> bool:
    wanted = normalize_txt(f"{VALUE_PREFIX}={expected_value}")
    return any(normalize_txt(r) == wanted for r in records)


def lookup_txt(name: str, resolver: dns.resolver.Resolver) -> TxtLookup:
    """TXT records at `name`, following CNAMEs our resolver did not chase itself."""
    cnames: list[str] = []
    qname = name
    try:
        for _ in range(MAX_CNAME_HOPS):
            answer = resolver.resolve(qname, "TXT", search=False, raise_on_no_answer=False)
            canonical = answer.canonical_name.to_text(omit_final_dot=True)
            if canonical.lower() != qname.lower():
                cnames.append(canonical)
            if answer.rrset is not None:
                # A TXT record may be split into several strings (255 bytes each): they are one value.
                records = tuple(b"".join(rd.strings).decode("utf-8", "replace") for rd in answer.rrset)
                return TxtLookup(name, Outcome.found, records, tuple(cnames))
            if canonical.lower() == qname.lower():
                return TxtLookup(name, Outcome.no_answer, (), tuple(cnames))
            qname = canonical  # an authoritative server gave the CNAME only: follow it ourselves
        return TxtLookup(name, Outcome.error, (), tuple(cnames), "the CNAME chain is too long (a loop?)")
    except dns.resolver.NXDOMAIN:
        return TxtLookup(name, Outcome.nxdomain, (), tuple(cnames))
    except dns.resolver.LifetimeTimeout:
        return TxtLookup(name, Outcome.timeout, (), tuple(cnames))
    except dns.resolver.NoNameservers as exc:
        return TxtLookup(name, Outcome.servfail, (), tuple(cnames), str(exc)[:300])
    except dns.resolver.YXDOMAIN:
        return TxtLookup(name, Outcome.error, (), tuple(cnames), "the name is too long after following a CNAME")
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return TxtLookup(name, Outcome.error, (), tuple(cnames), f"{type(exc).__name__}: {exc}"[:300])


def check_challenge(name: str, expected_value: str, resolver: dns.resolver.Resolver) -> TxtLookup:
    """Look up `name` and classify found records as a match or a mismatch."""
    result = lookup_txt(name, resolver)
    if result.outcome is Outcome.found and not matches(result.records, expected_value):
        return TxtLookup(name, Outcome.mismatch, result.records, result.cnames, result.detail)
    return result


def explain(result: TxtLookup, expected: str, timeout: float) -> str:
    """What we found, for the admin: what is wrong and how to fix it."""
    via = f" (following CNAME to {result.cnames[-1]})" if result.cnames else ""
    if result.outcome is Outcome.found:
        return f"Found the TXT record {expected} at {result.name}{via}."
    if result.outcome is Outcome.mismatch:
        return (f"Found {len(result.records)} TXT record{'s' if len(result.records) != 1 else ''} at "
                f"{result.name}{via}, but none is {expected}. Check the value for typos or extra characters.")
    if result.outcome is Outcome.nxdomain:
        return (f"{result.cnames[-1] if result.cnames else result.name} does not exist in DNS (NXDOMAIN): "
                "the record has not been added yet, was added under another name, or has not propagated.")
    if result.outcome is Outcome.no_answer:
        return (f"{result.name}{via} exists but has no TXT record. Add the TXT record (not a CNAME or A record) "
                "with the value shown.")
    if result.outcome is Outcome.servfail:
        return ("The DNS servers for this domain failed to answer (SERVFAIL). This is usually a DNSSEC or "
                "delegation problem at your DNS provider; we will try again.")
    if result.outcome is Outcome.timeout:
        return f"No DNS server answered within {timeout:g} seconds (timeout). We will try again."
    return f"The DNS lookup failed: {result.detail or 'unknown error'}. We will try again."
