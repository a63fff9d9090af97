"""Reports: daily and cohort figures by network and campaign (docs/reports.md).

``rollup`` keeps the rollups on the ingest path, ``query`` reads them,
``render`` writes JSON, CSV and tables, ``http`` and ``cli`` serve them.
"""
