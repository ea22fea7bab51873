import pytest

from app.config import ConfigError, load_config


def test_development_defaults_generate_and_keep_a_secret(tmp_path):
    first = load_config(str(tmp_path), {})
    second = load_config(str(tmp_path), {})
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert first["BASE_URL"] == "http://127.0.0.1:5000"
    assert first["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'gatehouse.db'}"
    assert first["REDIS_URL"] == f"unix://{tmp_path / 'valkey.sock'}" and first["REDIS_EMBEDDED"]
    assert first["SESSION_COOKIE_SECURE"] is False and first["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert first["SESSION_COOKIE_HTTPONLY"] is True
    assert first["MAIL_FROM"] == "no-reply@127.0.0.1"


def test_port_changes_the_default_base_url(tmp_path):
    assert load_config(str(tmp_path), {"PORT": "8080"})["BASE_URL"] == "http://127.0.0.1:8080"


def test_production_requires_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_config(str(tmp_path), {"BASE_URL": "https://gatehouse.example.com"})
    assert not (tmp_path / "secret_key").exists()


def test_production_cookies_are_secure(tmp_path):
    config = load_config(str(tmp_path), {"BASE_URL": "https://gatehouse.example.com/", "SECRET_KEY": "s" * 40})
    assert config["PRODUCTION"] and config["SESSION_COOKIE_SECURE"] and config["REMEMBER_COOKIE_SECURE"]
    assert config["BASE_URL"] == "https://gatehouse.example.com"
    assert config["MAIL_FROM"] == "no-reply@gatehouse.example.com"


@pytest.mark.parametrize("bad", ["gatehouse.example.com", "ftp://x.example", "https://x.example/path", "http://"])
def test_base_url_must_be_an_origin(tmp_path, bad):
    with pytest.raises(ConfigError, match="BASE_URL"):
        load_config(str(tmp_path), {"BASE_URL": bad, "SECRET_KEY": "x"})


def test_database_and_redis_urls(tmp_path):
    config = load_config(str(tmp_path), {"DATABASE_URL": "postgres://u:p@db/gh", "REDIS_URL": "redis://cache:6379/1"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/gh"
    assert config["REDIS_URL"] == "redis://cache:6379/1" and not config["REDIS_EMBEDDED"]
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/1"
    unix = load_config(str(tmp_path), {"REDIS_URL": "unix:///run/valkey.sock"})
    assert unix["RATELIMIT_STORAGE_URI"] == "redis+unix:///run/valkey.sock"


def test_create_app_refuses_production_without_secret(monkeypatch):
    from app import create_app
    monkeypatch.setenv("BASE_URL", "https://gatehouse.example.com")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError):
        create_app()
