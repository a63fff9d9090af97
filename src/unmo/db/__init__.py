"""Database access: connection, migrations, the embedded server."""
