"""Ground-truth traffic simulation (``unmo simulate``) for the pilot customers' profiles.

``profile`` loads and validates a customer profile (built-in JSON or a file),
``devices`` makes the phones, user agents and addresses, ``generate`` writes the
traffic of a history with every install's story, ``truth`` decides each install
by the attribution spec (a plain-Python reference, independent of the native
kernel), ``send`` delivers batches the way the customer integrates, and
``simulate`` runs it all and compares the server's answers with the truth.
See docs/operations.md.
"""
