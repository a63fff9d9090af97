"""The HTTP side of the ingest server (Starlette on uvicorn with uvloop)."""
