"""SCIM conformance check (not a test): `python bench/scim_conformance.py`.

Runs scim2-tester's RFC 7643/7644 checks in process against a fresh SQLite
database and prints every check that did not pass, then the counts. Known,
deliberate differences: a member needs an email address (a user created with
only a non-email userName is refused), and `active`, `emails` and the role are
always present, so removing them does not make them disappear.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scim import gatehouse_app, seed  # noqa: E402  (bench/scim.py)


def main() -> None:
    from scim2_client.engines.wsgi import WSGISCIMClient
    from scim2_tester import Status, check_server
    instance = Path(tempfile.mkdtemp(prefix="gatehouse-conformance-"))
    app = gatehouse_app(f"sqlite:///{instance / 'conformance.db'}", instance)
    app.config["BASE_URL"] = "http://localhost"
    token, _, _, _ = seed(app, 3)
    client = WSGISCIMClient(app, base_url="http://localhost/scim/v2", headers={"Authorization": f"Bearer {token}"})
    counts: dict[str, int] = {}
    for result in check_server(client, raise_exceptions=False):
        counts[result.status.name] = counts.get(result.status.name, 0) + 1
        if result.status != Status.SUCCESS:
            print(f"[{result.status.name}] {result.title}: {str(result.reason)[:300]}")
    print(counts)


if __name__ == "__main__":
    main()
