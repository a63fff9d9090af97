"""The ingest path: body -> typed records -> columns -> kernel -> durable COPY."""
