import pytest
from flask import Flask

from app.urls import safe_next


@pytest.fixture
def ctx():
    app = Flask(__name__)
    app.config["BASE_URL"] = "https://gatehouse.example.com"
    with app.app_context():
        yield


@pytest.mark.parametrize("target,expected", [
    ("/settings/security", "/settings/security"),
    ("/oauth/authorize?client_id=x&state=y", "/oauth/authorize?client_id=x&state=y"),
    ("https://gatehouse.example.com/library", "/library"),
    ("https://evil.example/library", None),
    ("//evil.example/x", None),
    ("/\\evil.example", None),
    ("javascript:alert(1)", None),
    ("http://gatehouse.example.com/library", None),  # another origin: scheme differs
    ("library", None),
    ("/x\r\nSet-Cookie: a=b", None),
    ("", None),
    (None, None),
])
def test_only_our_own_paths(ctx, target, expected):
    assert safe_next(target) == expected
