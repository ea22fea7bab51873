from tests.conftest import sign_in


def test_health(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"database": "ok", "redis": "ok"}


def test_sign_in_and_library(client, admin):
    sign_in(client, admin.email)
    page = client.get("/library")
    assert page.status_code == 200
    assert "Library" in page.get_data(as_text=True)
