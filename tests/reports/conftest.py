from __future__ import annotations

import datetime as dt
import os
from typing import Any

import httpx
import pytest

from tests.reports import data


@pytest.fixture(scope="session")
def traffic_app(server: Any, database: Any) -> dict[str, Any]:
    """An app with ~10 days of generated traffic (IP blocklist 10.66.0.0/16), sent through the session server."""
    app = data.create_app(database)
    seed = int(os.environ.get("UNMO_TEST_SEED", "1"))
    data.send(server.url, app["sdk_key"], data.traffic(seed))
    today = dt.datetime.now(dt.UTC).date()
    return {**app, "from": str(today - dt.timedelta(days=13)), "to": str(today + dt.timedelta(days=1))}


def get_report(server: Any, kind: str, key: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/reports/{kind}", params=params, headers={"Authorization": f"Bearer {key}"},
                     timeout=30)
