"""Steps that permanently delete a user's data, one per area.

Each area that keeps rows about a user (SCIM request log, SAML login log,
group memberships, ...) registers a step: `fn(workspace_id, user_id, batch_size)
-> int` deleting at most `batch_size` rows and returning how many it deleted
(0 when that area is clean). The purge job runs the steps until all return 0,
so it is resumable and idempotent.
"""
from __future__ import annotations

from typing import Callable

PurgeStep = Callable[[int, int, int], int]
_steps: dict[str, PurgeStep] = {}


def register_purge_step(name: str, step: PurgeStep) -> None:
    _steps[name] = step


def purge_steps() -> dict[str, PurgeStep]:
    return dict(_steps)
