"""Optional areas (domains, SSO, SCIM/OAuth) register their blueprints, CLI and
hooks here, each through its own `register(app)`; keeps create_app() short."""
from __future__ import annotations

import importlib

from flask import Flask

AREAS = ("app.domains", "app.sso", "app.scim", "app.oauth")


def register(app: Flask) -> None:
    for name in AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # area not built yet
            raise
        register_area = getattr(module, "register", None)
        if register_area is not None:
            register_area(app)
