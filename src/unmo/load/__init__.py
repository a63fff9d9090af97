"""``unmo load``: generated traffic against an ingest server, measured and verified (spec: tools.md).

``workload`` makes the records and pre-encoded bodies, ``client`` is the HTTP
connection, ``driver`` runs closed or open loops in one or more processes,
``verify`` checks the database against what was acknowledged, ``ceiling``
measures raw binary COPY of the same rows, ``report`` shows the results.
"""

from unmo.load.driver import LoadConfig, LoadResult, run_load

__all__ = ["LoadConfig", "LoadResult", "run_load"]
