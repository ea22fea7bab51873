"""Response headers every page gets, and template helpers."""
from __future__ import annotations

from flask import Flask, request

from app.errors import abort_with

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'")


def init_app(app: Flask) -> None:
    @app.before_request
    def refuse_nul_characters():
        """PostgreSQL text can't hold a NUL (SQLite would keep it): a form field or query
        parameter carrying one is refused here, as a 400 in the area's own format. (The SCIM
        API checks its JSON itself, to answer with SCIM's error types.)"""
        if request.path.startswith("/scim/"):
            return
        fields = [*request.args.items(multi=True)]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            fields += request.form.items(multi=True)
        if any("\x00" in value for _, value in fields):
            abort_with(400, "What you sent contains a NUL character, which can't be stored. Remove it and try again.")

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        # Not no-referrer: Flask-WTF checks the Referer on https.
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if app.config["PRODUCTION"]:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.endpoint != "static" and "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store" if request.method != "GET" or _is_private(response) else "no-cache"
        return response

    @app.template_filter("when")
    def format_when(value):
        if value is None:
            return "never"
        return value.strftime("%Y-%m-%d %H:%M UTC")


def _is_private(response) -> bool:
    return response.mimetype == "text/html"
