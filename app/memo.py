"""Memoizing a pure function of one string that requests reach.

`functools.lru_cache` keeps each argument as a key, and some of ours are sized by
whoever sends the request (a 2 MB form field, a forged SAML attribute). So only
arguments up to `max_length` characters are looked up and kept; a longer one (never
a real address, domain or timestamp) is computed each time and not kept."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


def memoized(*, max_length: int, maxsize: int = 4096) -> Callable[[Callable[[str], R]], Callable[[str], R]]:
    def decorate(function: Callable[[str], R]) -> Callable[[str], R]:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(text: str) -> R:
            if isinstance(text, str) and len(text) > max_length:
                return function(text)
            return cached(text)

        call.cache_info, call.cache_clear = cached.cache_info, cached.cache_clear
        return call
    return decorate
