"""The Security page is made of sections, one per area (SSO, domains,
provisioning). Each area registers its template and a function that builds
its context, so the page view stays a loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from app.models import Workspace


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    template: str
    context: Callable[[Workspace], dict]
    order: int = 100
    enterprise_only: bool = True


_sections: dict[str, Section] = {}


def register_section(section: Section) -> None:
    _sections[section.key] = section


def security_sections() -> list[Section]:
    return sorted(_sections.values(), key=lambda s: s.order)
