"""unmo: a self-hosted mobile attribution and event-ingestion server."""

__version__ = "0.1.0"
