"""IdP metadata: parsing (real certificates made here) and the guarded fetch."""
from __future__ import annotations

import re
import threading
import time

import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from app.sso import metadata
from app.sso.metadata import MetadataError, fetch_metadata, parse_metadata, read_certificate
from tests.support.saml_idp import TestIdp, make_key_and_cert


def test_parse_metadata_with_two_certificates():
    idp = TestIdp()
    second = make_key_and_cert("next")[1]
    config = parse_metadata(idp.metadata(second))
    assert config.entity_id == idp.entity_id and config.sso_url == idp.sso_url
    assert [c.fingerprint for c in config.certificates] == [read_certificate(idp.cert_pem.decode()).fingerprint,
                                                            read_certificate(second.decode()).fingerprint]
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", config.certificates[0].fingerprint)


@pytest.mark.parametrize("xml, reason", [
    ("<x/>", "no IdP entityID"),
    ('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "not valid SAML IdP metadata: it declares a DOCTYPE"),
    ("not xml at all", "not valid SAML IdP metadata: the XML is incomplete or broken"),
    ("<md:EntityDescriptor><foo", "not valid SAML IdP metadata: the XML is incomplete or broken"),
    ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"><md:IDPSSODescriptor '
     'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>',
     "no SingleSignOnService"),
])
def test_unusable_metadata_is_explained(xml, reason):
    with pytest.raises(MetadataError, match=reason):
        parse_metadata(xml)


def test_oversized_metadata_is_refused():
    with pytest.raises(MetadataError, match="larger than"):
        parse_metadata(b"<x>" + b" " * (metadata.MAX_METADATA_BYTES + 1) + b"</x>")


def test_read_certificate_refuses_garbage():
    with pytest.raises(MetadataError, match="not an X.509 certificate"):
        read_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")


# --- the fetch --------------------------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("http://idp.example.com/metadata", "must use https"),
    ("https://127.0.0.1/metadata", "private, loopback or link-local"),
    ("https://localhost/metadata", "private, loopback or link-local"),
    ("https://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
    ("https://10.1.2.3/metadata", "private, loopback or link-local"),
    ("https://[::1]/metadata", "private, loopback or link-local"),
    ("https://[::ffff:192.168.0.1]/metadata", "private, loopback or link-local"),
    ("ftp://idp.example.com/metadata", "must start with https"),
])
def test_production_fetch_refuses_http_and_internal_addresses(url, reason):
    with pytest.raises(MetadataError, match=reason):
        fetch_metadata(url, production=True)


@pytest.fixture
def server():
    app = Flask("meta")
    idp = TestIdp()
    app.add_url_rule("/ok", "ok", lambda: idp.metadata())
    app.add_url_rule("/huge", "huge", lambda: Response((b"x" * 65536 for _ in range(20)), mimetype="text/xml"))
    app.add_url_rule("/slow", "slow", lambda: (time.sleep(2), "late")[1])
    app.add_url_rule("/redirect", "redirect", lambda: ("", 302, {"Location": "/ok"}))
    app.add_url_rule("/gone", "gone", lambda: ("nope", 404))
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", idp
    srv.shutdown()


def test_fetch_follows_a_redirect_and_returns_the_xml(server):
    base, idp = server
    assert parse_metadata(fetch_metadata(base + "/redirect", production=False)).entity_id == idp.entity_id


def test_fetch_enforces_the_size_limit_and_status(server):
    base, _ = server
    with pytest.raises(MetadataError, match="larger than"):
        fetch_metadata(base + "/huge", production=False)
    with pytest.raises(MetadataError, match="HTTP 404"):
        fetch_metadata(base + "/gone", production=False)


@pytest.fixture
def redirecting_server():
    """Answers every GET with a redirect to the path's target, sent as is (a Flask app would
    refuse to send these malformed locations)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    targets = {"/bad-port": "https://idp.example.test:99999/m", "/bad-host": f"https://{'a' * 64}.example.test/m"}

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def test_a_redirect_to_a_malformed_url_is_a_metadata_error(redirecting_server):
    """Not a crash of the job (which would stop the daily refresh of every other connection)."""
    with pytest.raises(MetadataError, match="invalid port"):
        fetch_metadata(redirecting_server + "/bad-port", production=False)
    with pytest.raises(MetadataError, match="could not be found"):
        fetch_metadata(redirecting_server + "/bad-host", production=False)


def test_fetch_times_out(server, monkeypatch):
    base, _ = server
    monkeypatch.setattr(metadata, "FETCH_TIMEOUT", 0.3)
    started = time.monotonic()
    with pytest.raises(MetadataError, match="did not answer in time"):
        fetch_metadata(base + "/slow", production=False)
    assert time.monotonic() - started < 1.5


def drip_to(conn, first: bytes, drip: bytes, stop: threading.Event) -> None:
    """A server that answers `first`, then one `drip` every 50 ms: never silent for long."""
    conn.recv(65536)
    conn.sendall(first)
    give_up = time.monotonic() + 5  # a fetch that ignores its deadline fails the test, never hangs it
    while not stop.is_set() and time.monotonic() < give_up:
        try:
            conn.sendall(drip)
        except OSError:
            break
        time.sleep(0.05)
    conn.close()


def assert_cut_at_the_deadline(monkeypatch, url: str, stop: threading.Event, *sockets) -> None:
    """With a deadline of 0.5 s, the fetch of `url` is refused as too slow, well within 2 s."""
    monkeypatch.setattr(metadata, "FETCH_DEADLINE", 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(MetadataError, match="did not answer in time"):
            fetch_metadata(url, production=False)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("scheme, first, drip", [
    ("http", b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n", b"<"),  # the body
    ("http", b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"),  # a header line that never ends
    ("https", b"\x16\x03\x03\x40\x00", b"\x00"),  # a TLS handshake record of 16 KB, a byte at a time
], ids=["body", "headers", "tls-handshake"])
def test_fetch_has_an_overall_deadline_against_dripping_servers(monkeypatch, scheme, first, drip):
    """Each byte arrives well within the per-read timeout; only the overall deadline stops it."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    threading.Thread(target=lambda: drip_to(listener.accept()[0], first, drip, stop), daemon=True).start()
    assert_cut_at_the_deadline(monkeypatch, f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/md", stop, listener)


def test_an_unreachable_server_is_explained_in_plain_words():
    from tests.support.servers import free_port
    with pytest.raises(MetadataError) as caught:
        fetch_metadata(f"http://127.0.0.1:{free_port()}/md", production=False)  # nothing listens there
    assert str(caught.value) == ("Could not fetch the metadata from 127.0.0.1: the server refused the connection. "
                                 "Check the URL, or paste the metadata XML instead.")


def test_the_deadline_holds_when_it_passes_during_the_connect(monkeypatch):
    """The deadline's timer has no socket to shut while the TCP connect is under way: the connect
    itself gets only what is left, so a server slow to accept, then dripping its headers, is cut."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # a full accept queue: the fetch's SYN waits
    stop = threading.Event()

    def serve():
        time.sleep(0.3)
        listener.accept()[0].close()  # room again: the fetch's retried SYN gets in about a second later
        drip_to(listener.accept()[0], b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", stop)

    threading.Thread(target=serve, daemon=True).start()
    assert_cut_at_the_deadline(monkeypatch, f"http://127.0.0.1:{port}/md", stop, listener, filler)


def test_the_deadline_holds_when_it_passes_just_as_the_connection_is_made(monkeypatch):
    """The timer fires between the connect and the socket being stored, finding nothing to shut
    (a thread paused at the wrong moment): the connection is checked once stored."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()
    threading.Thread(target=lambda: drip_to(listener.accept()[0], b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", stop),
                     daemon=True).start()
    connect = metadata._Pinned._open_socket

    def connected_as_the_deadline_passes(conn):
        sock = connect(conn)
        time.sleep(max(0.0, conn._deadline - time.monotonic()) + 0.05)
        return sock

    monkeypatch.setattr(metadata._Pinned, "_open_socket", connected_as_the_deadline_passes)
    assert_cut_at_the_deadline(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}/md", stop, listener)
