-- The daily fold's CTIT-rejected touches (unmo.reports.rollup, docs/reports.md): the few installs that
-- skipped a touch as a CTIT anomaly, found by seq without a second pass over the tail.  Partial: a row
-- with a NULL ctit_rejected (nearly all) only costs the COPY the test of the predicate.
--
-- On the partitioned parent, so PostgreSQL builds it on every partition and on every partition made
-- later.  The build reads each existing partition once and holds off the flushes (SHARE lock) while it
-- does: on a large database, upgrade in a quiet hour (docs/reports.md, "Upgrading").
CREATE INDEX records_ctit ON unmo.records (app_id, seq) WHERE ctit_rejected IS NOT NULL;
