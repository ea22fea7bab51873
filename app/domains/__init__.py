"""Authorized domains: Settings → Security → Authorized domains, the emailed
verification link, the `domain add` command, and the DNS checks in jobs/domains.py."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.domains.cli import domain_cli
    from app.domains.routes import bp, section_context
    from app.settings.sections import Section, register_section
    app.register_blueprint(bp)
    app.cli.add_command(domain_cli)
    register_section(Section("domains", "Authorized domains", "domains/_section.html", section_context, order=20))
