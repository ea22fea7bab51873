from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user, login_required


def admin_required(view):
    """Signed in, and an admin of their workspace; 403 with a clear page otherwise."""
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return wrapped
