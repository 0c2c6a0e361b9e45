import pytest


@pytest.mark.django_db
def test_home_and_pricing_render(client):
    assert client.get("/").status_code == 200
    assert client.get("/pricing/").status_code == 200
