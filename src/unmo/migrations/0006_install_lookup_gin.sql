-- The install look-up by identifier (Writer._load_installs, the tracker's agreement runs,
-- GET /v1/attribution) goes through the GIN index on installs.device_hashes again, one probe per
-- identifier, and unmo.install_ids (migration 0005) goes.
--
-- 0005 replaced `device_hashes && $2` over a whole flush's identifiers, which cost the app's
-- installs times the identifiers asked, with a b-tree of (app_id, hash, seq, ord) kept by a
-- statement trigger.  The trigger was the dearest part of storing an install: a COPY of 190
-- installs (the load's share of a 3,800-record flush) and its commit took 4.3-4.5 ms with it
-- and the GIN index, 2.8-3.1 ms as here, 2.2-2.3 ms with neither; under `unmo load` the
-- trigger was 7 % of PostgreSQL's CPU.  Probed one identifier at a time
-- (`device_hashes && ARRAY[h]`, unmo.ingest.writer.INSTALLS_BY_IDS), the GIN index finds 11,000
-- identifiers among a million installs in 60-69 ms, where install_ids took 165-186 ms
-- (`python -m bench.install_cost`; docs/performance.md, "Storing an install").
--
-- fastupdate off: with the pending list on, every probe would scan the list of entries not yet
-- merged (up to gin_pending_list_limit, 4 MB) before the tree; off, an install's 2-4 entries go
-- into the tree at once, which is what the 2.8-3.1 ms above measured.
--
-- Stop servers of earlier versions before migrating: their writer reads unmo.install_ids, so
-- their flushes that look up an install fail once it is gone.

DROP TRIGGER installs_ids ON unmo.installs;
DROP FUNCTION unmo.install_ids_add();
DROP TABLE unmo.install_ids;

ALTER INDEX unmo.installs_device_hashes SET (fastupdate = off);
-- turning fastupdate off does not merge what the pending list holds (PostgreSQL docs, "GIN Fast
-- Update Technique")
SELECT gin_clean_pending_list('unmo.installs_device_hashes'::regclass);
