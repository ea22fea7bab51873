"""A real authoritative DNS server in the test process (dnslib), whose answers
the tests change: TXT records, CNAMEs, SERVFAIL, and names that never answer
(a timeout). See RECIPES.md §3."""
from __future__ import annotations

import pytest
from dnslib import CNAME, QTYPE, RCODE, RR, TXT, DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):
    """txt: name -> records; a record is a str (split into 255-byte strings here)
    or a list of strings (sent as given). cname: name -> target. servfail,
    silent: sets of names answered with SERVFAIL, or not at all."""

    def __init__(self):
        self.txt: dict[str, list] = {}
        self.cname: dict[str, str] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.nameservers = ""
        self.queries = 0

    def reset(self) -> None:
        self.txt.clear(), self.cname.clear(), self.servfail.clear(), self.silent.clear()
        self.queries = 0

    def resolve(self, request, handler):
        self.queries += 1
        reply, name = request.reply(), str(request.q.qname).rstrip(".").lower()
        if name in self.silent:
            raise DNSError("silent name: no reply (the client times out)")
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
        elif name in self.cname:
            reply.add_answer(RR(request.q.qname, QTYPE.CNAME, ttl=0, rdata=CNAME(self.cname[name] + ".")))
        elif name not in self.txt:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for rec in self.txt[name]:
                strings = rec if isinstance(rec, list) else [rec[i:i + 255] for i in range(0, len(rec) or 1, 255)]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=0, rdata=TXT(strings)))
        return reply


class DnsServer:
    def __init__(self):
        self.zone = Zone()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
        self.udp = DNSServer(self.zone, address="127.0.0.1", port=0, logger=quiet)
        port = self.udp.server.server_address[1]  # the OS's free port; TCP on the same number
        self.tcp = DNSServer(self.zone, address="127.0.0.1", port=port, tcp=True, logger=quiet)
        self.zone.nameservers = f"127.0.0.1:{port}"

    def start(self):
        self.udp.start_thread(), self.tcp.start_thread()
        return self

    def stop(self):
        self.udp.stop(), self.tcp.stop()


@pytest.fixture(scope="session")
def dns_server():
    """The zone: tests change `.txt` (and `.cname`, `.servfail`, `.silent`) and put
    `.nameservers` ("127.0.0.1:PORT") into app.config["DNS_NAMESERVERS"]."""
    server = DnsServer().start()
    yield server.zone
    server.stop()


@pytest.fixture
def dns_zone(app, dns_server):
    """The session's DNS server, emptied, and the app pointed at it (1 s timeout)."""
    dns_server.reset()
    app.config["DNS_NAMESERVERS"] = dns_server.nameservers
    app.config["DNS_TIMEOUT"] = 1.0
    return dns_server
