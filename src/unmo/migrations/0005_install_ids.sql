-- The install look-up by identifier (unmo.ingest.writer.Writer._load_installs): for the devices a
-- flush brings that the in-memory state does not hold, the installs sharing an identifier with them.
-- `installs.device_hashes && $2` over the flush's identifiers cost the app's installs times the
-- identifiers asked (PostgreSQL's array overlap compares every pair, and so does the GIN index's
-- check): 2.9 s a flush for 11,000 identifiers (docs/performance.md, "Batch size").  Here each
-- identifier of each install is a row of a b-tree, found with one descent (`hash = ANY($2)`).
--
-- Kept by a trigger on unmo.installs, in the transaction that stores the installs: whatever writes
-- them (this version's writer, a server of the previous version during an upgrade) keeps it whole.

-- No install stored while the existing ones are copied (the trigger covers every later one).
LOCK TABLE unmo.installs IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE unmo.install_ids (
    app_id  bigint NOT NULL,
    hash    bigint NOT NULL,       -- one of the install's typed identifier hashes (installs.device_hashes)
    seq     bigint NOT NULL,       -- the install's (seq, ord): unmo.installs' row
    ord     integer NOT NULL,
    PRIMARY KEY (app_id, hash, seq, ord)
);

CREATE FUNCTION unmo.install_ids_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO unmo.install_ids (app_id, hash, seq, ord)
    SELECT DISTINCT n.app_id, h, n.seq, n.ord FROM stored n CROSS JOIN LATERAL unnest(n.device_hashes) AS h
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- Once a statement (a flush's COPY), over the rows it stored.
CREATE TRIGGER installs_ids AFTER INSERT ON unmo.installs
    REFERENCING NEW TABLE AS stored FOR EACH STATEMENT EXECUTE FUNCTION unmo.install_ids_add();

INSERT INTO unmo.install_ids (app_id, hash, seq, ord)
SELECT DISTINCT i.app_id, h, i.seq, i.ord FROM unmo.installs i CROSS JOIN LATERAL unnest(i.device_hashes) AS h
ON CONFLICT DO NOTHING;
ANALYZE unmo.install_ids;
