"""The Customer Success Tracker (spec: tracker.md; docs/tracker.md).

A service beside the ingest servers, in the same database under its own schema
(``tracker``): it onboards pilot customers (apps, keys and an onboarding kit in
one call), watches what unmo promises each of them (volume, latency, errors,
uptime, attribution agreement, cost savings) from what the ingest servers
record, runs satisfaction surveys, forwards feedback to the ticketing webhook
and shows it all on a dashboard.  Modules, top-down:

- ``settings``: flags and environment;
- ``customers``: customers, their apps and onboarding; ``kit``: the onboarding kit;
- ``probes``: ``/readyz`` probes of the ingest servers;
- ``figures``: per-customer and programme figures against their targets;
- ``agreement``: provider install reports compared with unmo's results;
- ``pricing``: the provider price table and cost savings;
- ``surveys``, ``feedback`` (and its webhook ``outbox``);
- ``report``: the weekly report; ``service``: background tasks; ``app``: the HTTP API;
  ``openapi``; ``cli``: ``unmo tracker ...``.
"""
