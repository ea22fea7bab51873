"""Domain names as admins type them, made canonical, and the names no
workspace may authorize (public suffixes, public mailboxes, disposable mail).

Canonical form: lowercase ASCII, IDNA 2008 with UTS 46 mapping (so
"Bücher.Example." and "xn--bcher-kva.example" are the same name), no
trailing dot. The Public Suffix List comes with `publicsuffixlist` (no
download at run time)."""
from __future__ import annotations

import functools
import ipaddress
import re
from pathlib import Path

import idna
from disposable_email_domains import blocklist as DISPOSABLE
from publicsuffixlist import PublicSuffixList

from app.memo import memoized

# Special-use names (RFC 2606 / 6761) accepted for demos and tests; not in the PSL.
SPECIAL_USE_TLDS = frozenset({"test", "example"})
_psl = PublicSuffixList()
_DATA = Path(__file__).parent / "data" / "public_mailbox_domains.txt"


class InvalidDomain(ValueError):
    """The input is not a domain a workspace can authorize; the message says why."""


@functools.cache
def _public_mailbox_rules() -> tuple[frozenset[str], frozenset[str]]:
    exact, families = set(), set()
    for line in _DATA.read_text().splitlines():
        entry = line.split("#", 1)[0].strip().lower()
        if entry.endswith(".*"):
            families.add(entry[:-2])
        elif entry:
            exact.add(entry)
    return frozenset(exact), frozenset(families)


def registrable_domain(name: str) -> str | None:
    """acme.co.uk for mail.acme.co.uk; None for a public suffix."""
    return _psl.privatesuffix(name)


def relative_to_zone(name: str, zone: str) -> str:
    """A record's name as DNS providers' editors want it in `zone`, which they append:
    _gatehouse-challenge.eu for _gatehouse-challenge.eu.acme.co.uk in acme.co.uk."""
    return name.removesuffix("." + zone)


def is_public_mailbox(name: str) -> bool:
    """gmail.com, yahoo.co.uk, a subdomain of either..."""
    exact, families = _public_mailbox_rules()
    base = registrable_domain(name) or name
    if name in exact or base in exact:
        return True
    suffix = _psl.publicsuffix(base) or ""
    first_label = base[: -len(suffix) - 1] if suffix and base.endswith("." + suffix) else base.partition(".")[0]
    return first_label in families


def is_disposable(name: str) -> bool:
    base = registrable_domain(name) or name
    return name in DISPOSABLE or base in DISPOSABLE


def to_unicode(name: str) -> str:
    try:
        return idna.decode(name)
    except idna.IDNAError:
        return name


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def normalize_domain(raw: str) -> str:
    """The canonical ASCII name, or InvalidDomain with a message for the admin."""
    text = (raw or "").strip()
    if not text:
        raise InvalidDomain("Enter a domain, such as example.com.")
    if len(text) > 300:
        raise InvalidDomain("That is too long to be a domain name.")
    if _SCHEME.match(text) or text.lower().startswith(("mailto:", "http:", "https:")):
        raise InvalidDomain("Enter the domain only, without http:// or https://, such as example.com.")
    if "@" in text:
        raise InvalidDomain("Enter the domain only, not an email address: for jane@example.com enter example.com.")
    if any(ch in text for ch in "/?#\\"):
        raise InvalidDomain("Enter the domain only, without a path, such as example.com.")
    if any(ch.isspace() for ch in text):
        raise InvalidDomain("A domain cannot contain spaces.")
    if "*" in text:
        raise InvalidDomain("Enter the domain without a wildcard: subdomains are covered once the domain is verified.")
    if _is_ip_address(text):
        raise InvalidDomain("IP addresses cannot be authorized; enter a domain name such as example.com.")
    if ":" in text:
        raise InvalidDomain("Enter the domain without a port number, such as example.com.")
    if text.endswith("."):
        text = text[:-1]
    if not text or ".." in text or text.startswith("."):
        raise InvalidDomain("That is not a valid domain name: it has an empty label.")
    try:
        name = idna.encode(text, uts46=True, transitional=False).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise InvalidDomain(f"{raw.strip()} is not a valid domain name ({exc}).") from None
    # UTS 46 maps the ideographic and full-width full stops (。．｡) to "." only now: a root dot
    # typed on such a keyboard must not make "acme.com." a different domain from acme.com.
    name = name.removesuffix(".")
    if not name or ".." in name or name.startswith(".") or name.endswith("."):
        raise InvalidDomain("That is not a valid domain name: it has an empty label.")
    if "." not in name:
        raise InvalidDomain(f"Enter a full domain such as {name}.com, not a single word.")
    if _looks_numeric(name):
        raise InvalidDomain("IP addresses cannot be authorized; enter a domain name such as example.com.")
    tld = name.rpartition(".")[2]
    if tld not in SPECIAL_USE_TLDS:
        if _psl.publicsuffix(name, accept_unknown=False) is None:
            raise InvalidDomain(f".{to_unicode(tld)} is not a known top-level domain; check the spelling.")
        if _psl.is_public(name) or registrable_domain(name) is None:
            raise InvalidDomain(f"{to_unicode(name)} is a public suffix that anyone can register under; "
                                "enter your organization's own domain, such as example.{0}.".format(to_unicode(name)))
    return name


def refuse_public(name: str) -> None:
    """Public mailbox and disposable domains can never be authorized."""
    if is_public_mailbox(name):
        raise InvalidDomain(f"{to_unicode(name)} is a public email provider: anyone can get an address there, "
                            "so it cannot be authorized. Add your organization's own domain.")
    if is_disposable(name):
        raise InvalidDomain(f"{to_unicode(name)} is a disposable email domain and cannot be authorized.")


def parents_and_self(name: str) -> list[str]:
    """eng.acme.co.uk -> [eng.acme.co.uk, acme.co.uk] (never the public suffix)."""
    names, base = [name], registrable_domain(name)
    while base and name != base and "." in name:
        name = name.partition(".")[2]
        names.append(name)
    return names


@memoized(max_length=320)  # every SSO sign-in asks (IDNA encoding is the slow part)
def email_domain(email_or_domain: str) -> str | None:
    """The canonical domain of an address (or of a bare domain); None if unusable."""
    text = (email_or_domain or "").strip().rpartition("@")[2].rstrip(".")
    if not text:
        return None
    try:
        return idna.encode(text, uts46=True, transitional=False).decode("ascii").lower()
    except idna.IDNAError:
        return text.lower()


def _is_ip_address(text: str) -> bool:
    candidate = text.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        try:
            ipaddress.ip_address(host.strip("[]"))
            return True
        except ValueError:
            return False
    return False


def _looks_numeric(name: str) -> bool:
    return all(label.isdigit() for label in name.split("."))
