"""IdP metadata: parse it (XML from a URL, an upload or the CLI) and fetch it
safely. python3-saml's own `get_metadata` has no timeout, size limit or
address check, so the fetch is ours; its parser (which refuses DTDs and
entities) reads the XML."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser as MetadataParser

MAX_METADATA_BYTES = 512 * 1024
FETCH_TIMEOUT = 10  # seconds, for connecting and for each read
FETCH_DEADLINE = 30  # seconds for the whole fetch, TLS, headers and body (a server dripping bytes can't hold a worker)
MAX_REDIRECTS = 3
TOO_SLOW = "The metadata URL did not answer in time."


class MetadataError(ValueError):
    """The metadata can't be used; the message says why, for an admin."""


@dataclass
class CertificateInfo:
    pem: str
    fingerprint: str
    subject: str
    not_before: dt.datetime | None
    not_after: dt.datetime


@dataclass
class IdpConfig:
    entity_id: str
    sso_url: str
    certificates: list[CertificateInfo] = field(default_factory=list)


def fingerprint_of(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def read_certificate(text: str) -> CertificateInfo:
    """A certificate from PEM, or from the bare base64 found in metadata."""
    text = (text or "").strip()
    try:
        if "-----BEGIN CERTIFICATE-----" in text:
            cert = x509.load_pem_x509_certificate(text.encode())
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise MetadataError("That is not an X.509 certificate (paste the PEM, starting with "
                            "-----BEGIN CERTIFICATE-----).") from exc
    der = cert.public_bytes(Encoding.DER)
    pem = cert.public_bytes(Encoding.PEM).decode()
    return CertificateInfo(pem=pem, fingerprint=fingerprint_of(der), subject=cert.subject.rfc4514_string()[:500],
                           not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def _unreadable_because(exc: Exception) -> str:
    name = type(exc).__name__
    if name in ("DTDForbidden", "EntitiesForbidden", "ExternalReferenceForbidden"):
        return "it declares a DOCTYPE or entities, which are refused for safety"
    if name == "XMLSyntaxError":
        return "the XML is incomplete or broken"
    return "it could not be read as XML"


def _unreachable_because(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "the server refused the connection"
    if isinstance(exc, ConnectionResetError):
        return "the server closed the connection"
    if isinstance(exc, http.client.HTTPException):
        return "the server did not answer with valid HTTP"
    return "the server could not be reached"


def parse_metadata(xml: str | bytes) -> IdpConfig:
    if isinstance(xml, bytes):
        if len(xml) > MAX_METADATA_BYTES:
            raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KB.")
        xml = xml.decode("utf-8", errors="replace")
    if len(xml) > MAX_METADATA_BYTES:
        raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KB.")
    try:
        parsed = MetadataParser.parse(xml.encode())
    except Exception as exc:  # noqa: BLE001 - lxml, DTDForbidden, ... all mean "not usable metadata"
        raise MetadataError(f"This is not valid SAML IdP metadata: {_unreadable_because(exc)}. Copy the IdP "
                            "metadata XML again, whole, or give its URL instead.") from exc
    idp = parsed.get("idp") or {}
    entity_id = idp.get("entityId")
    sso_url = (idp.get("singleSignOnService") or {}).get("url")
    certs = []
    if idp.get("x509cert"):
        certs.append(idp["x509cert"])
    certs.extend((idp.get("x509certMulti") or {}).get("signing") or [])
    if not entity_id:
        raise MetadataError("The metadata has no IdP entityID (is it the IdP's metadata, not the SP's?).")
    if not sso_url:
        raise MetadataError("The metadata has no SingleSignOnService with the HTTP-Redirect binding.")
    if not certs:
        raise MetadataError("The metadata has no signing certificate.")
    seen, infos = set(), []
    for text in certs:
        info = read_certificate(text)
        if info.fingerprint not in seen:
            seen.add(info.fingerprint)
            infos.append(info)
    return IdpConfig(entity_id=entity_id.strip(), sso_url=sso_url.strip(), certificates=infos)


def _address_allowed(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and (addr.ipv4_mapped or addr.sixtofour):
        addr = addr.ipv4_mapped or addr.sixtofour
    site_local = isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local  # fec0::/10: deprecated, not global
    return addr.is_global and not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                                   or addr.is_reserved or addr.is_unspecified or site_local)


def _resolve(host: str, port: int, *, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:  # UnicodeError: a label IDNA refuses (> 63 chars)
        raise MetadataError(f"The host {host[:100]} could not be found.") from exc
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        refused = [a for a in addresses if not _address_allowed(a)]
        if refused:  # any private answer refuses the whole name (no picking around a rebinding)
            raise MetadataError(f"{host} resolves to a private, loopback or link-local address ({refused[0]}); "
                                "metadata must come from a public https URL.")
    return addresses[0]


class _Pinned:
    """Mixed into http.client's connections: connects to the address we checked (never a name
    resolved again), within what is left of the fetch's deadline."""

    def __init__(self, host, ip: str, deadline: float, **kw):
        super().__init__(host, **kw)
        self._ip, self._deadline = ip, deadline

    def _open_socket(self) -> socket.socket:
        """The TCP connection, within the per-read timeout and what is left of the deadline
        (its timer has no socket to shut while this runs)."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the fetch deadline passed")
        return socket.create_connection((self._ip, self.port), min(self.timeout, remaining))

    def _still_in_time(self) -> None:
        """Once `self.sock` is set, from where the deadline's timer can shut it: if the timer
        fired before, it found nothing to shut, so the deadline is enforced here."""
        if time.monotonic() > self._deadline:
            self.sock.close()
            raise TimeoutError("the fetch deadline passed")


class _PinnedHTTPSConnection(_Pinned, http.client.HTTPSConnection):
    """TLS still verifies the host name."""

    def connect(self):
        # The handshake after `self.sock` is set, so the deadline can cut it short too.
        self.sock = self._context.wrap_socket(self._open_socket(), server_hostname=self.host,
                                              do_handshake_on_connect=False)
        self._still_in_time()
        self.sock.do_handshake()


class _PinnedHTTPConnection(_Pinned, http.client.HTTPConnection):
    def connect(self):
        self.sock = self._open_socket()
        self._still_in_time()


def _cut_at_deadline(conn) -> None:
    """The deadline passed: shut the TCP connection so whatever read is waiting (the TLS
    handshake, a header line dripping in, the body) returns at once. The plain socket's
    shutdown even for TLS: SSLSocket's own one must not run beside a read in another thread."""
    sock = conn.sock
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


def fetch_metadata(url: str, *, production: bool) -> bytes:
    """GET the metadata URL: https only and public addresses only in production,
    timeouts, at most MAX_METADATA_BYTES, a few redirects (each re-checked)."""
    deadline = time.monotonic() + FETCH_DEADLINE
    for _ in range(MAX_REDIRECTS + 1):
        if time.monotonic() > deadline:
            raise MetadataError(TOO_SLOW)
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise MetadataError("The metadata URL must start with https://.")
        if production and parts.scheme != "https":
            raise MetadataError("The metadata URL must use https.")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:  # e.g. a redirect to https://host:99999/
            raise MetadataError("The metadata URL (or a redirect from it) has an invalid port.") from exc
        ip = _resolve(parts.hostname, port, allow_private=not production)
        if parts.scheme == "https":
            conn = _PinnedHTTPSConnection(parts.hostname, ip, deadline, port=port, timeout=FETCH_TIMEOUT,
                                          context=ssl.create_default_context())
        else:
            conn = _PinnedHTTPConnection(parts.hostname, ip, deadline, port=port, timeout=FETCH_TIMEOUT)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The per-read timeout can't stop a server sending a byte now and then; this can.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut_at_deadline, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", path, headers={"Accept": "application/samlmetadata+xml, application/xml, text/xml",
                                               "User-Agent": "Gatehouse-metadata-fetch"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise MetadataError(f"The metadata URL answered HTTP {response.status}.")
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_METADATA_BYTES:
                raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KB.")
            return _read_body(response, deadline)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError) or "timed out" in str(exc) or time.monotonic() > deadline:
                raise MetadataError(TOO_SLOW) from exc
            if isinstance(exc, ssl.SSLError):
                raise MetadataError(f"TLS failed for {parts.hostname}: {exc.__class__.__name__}.") from exc
            raise MetadataError(f"Could not fetch the metadata from {parts.hostname}: {_unreachable_because(exc)}. "
                                "Check the URL, or paste the metadata XML instead.") from exc
        finally:
            watchdog.cancel()
            conn.close()
    raise MetadataError("The metadata URL redirected too many times.")


def _read_body(response, deadline: float) -> bytes:
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise MetadataError(TOO_SLOW)
        chunk = response.read1(64 * 1024) if hasattr(response, "read1") else response.read(64 * 1024)
        if not chunk:
            if time.monotonic() > deadline:  # cut short by the deadline, not the end of the document
                raise MetadataError(TOO_SLOW)
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_METADATA_BYTES:
            raise MetadataError(f"The metadata is larger than {MAX_METADATA_BYTES // 1024} KB.")
        chunks.append(chunk)
