"""The OpenAPI pages load every asset from labq itself (lab machines and cluster nodes are often
offline)."""

import re

from fastapi.testclient import TestClient

from api.main import create_app


def test_docs_assets_are_local():
    client = TestClient(create_app(), base_url="http://127.0.0.1")  # a loopback Host
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']', html)
        assert urls, page
        assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
        for u in urls:
            if u.startswith("/static-offline-docs/"):
                assert client.get(u).status_code == 200, u
