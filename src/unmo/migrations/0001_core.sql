-- unmo core schema.  Designed to run unchanged on one PostgreSQL and on Citus:
--  * apps and api_keys are small and read everywhere: Citus reference tables;
--  * records, installs and app_log carry their distribution column (device_key,
--    resp. app_id) in every primary or unique key;
--  * records are range-partitioned by the day they were received, so that old
--    days are dropped with DROP TABLE instead of DELETE.
-- See docs/schema.md.

CREATE SCHEMA IF NOT EXISTS unmo;

CREATE TABLE unmo.apps (
    app_id                   bigint PRIMARY KEY,
    name                     text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$'),
    platform                 text CHECK (platform IN ('ios', 'android')),
    -- attribution settings, milliseconds (docs/attribution.md)
    click_window_ms          bigint NOT NULL DEFAULT 604800000,
    impression_window_ms     bigint NOT NULL DEFAULT 86400000,
    probabilistic_window_ms  bigint NOT NULL DEFAULT 86400000,
    reattribution_window_ms  bigint NOT NULL DEFAULT 7776000000,
    min_ctit_ms              bigint NOT NULL DEFAULT 10000,
    ip_blocklist             cidr[] NOT NULL DEFAULT '{}',
    -- records per second this app may send (token bucket, per server process); NULL = server default
    rate_limit               integer CHECK (rate_limit IS NULL OR rate_limit > 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored as SHA-256 of the whole key: they are 192-bit random tokens,
-- so a fast hash is as safe as a slow one (GitHub and Stripe tokens are kept the
-- same way); the prefix is kept only to show which key is which.
CREATE TABLE unmo.api_keys (
    key_hash    bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    app_id      bigint NOT NULL REFERENCES unmo.apps ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('sdk', 'secret')),
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_app ON unmo.api_keys (app_id);

-- One row per app: the number of ingest commits that touched the app.  Every
-- commit locks the app's row, applies what other processes committed since
-- (records.seq > the process's last seen), and bumps seq: the database is the
-- arbiter that makes several processes decide as one (docs/architecture.md).
CREATE TABLE unmo.app_log (
    app_id  bigint PRIMARY KEY,
    seq     bigint NOT NULL DEFAULT 0
);

-- Every accepted record, once.  kind: 1 click, 2 impression, 3 install, 4 open, 5 event.
-- On touch rows the campaign columns are the touch's own; on install, open and
-- event rows they are the source the kernel attributed them to (NULL: organic or
-- unattributed), so reports group every row by the same columns.
CREATE TABLE unmo.records (
    device_key   bigint NOT NULL,          -- XXH64 of the first device identifier (docs/schema.md)
    app_id       bigint NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint NOT NULL,          -- app_log.seq of the commit that stored the row
    ord          integer NOT NULL,         -- position inside that commit (decision order)
    kind         smallint NOT NULL,
    record_id    text NOT NULL,
    ts           timestamptz NOT NULL,     -- clock-skew corrected
    idfa         text,
    gaid         text,
    oaid         text,
    idfv         text,
    android_id   text,
    ip           inet,
    ua           text,
    platform     text,
    os           text,
    os_version   text,
    model        text,
    network      text,
    campaign     text,
    adset        text,
    ad           text,
    site         text,
    referrer     text,
    name         text,
    revenue      double precision,
    currency     text,
    properties   jsonb,
    fp           bigint,                   -- fingerprint hash of touches and installs (unmo.ingest.fingerprint)
    -- kernel outcome: touches 0 eligible, 1 ip_blocklist; installs the status
    -- (1 attributed, 2 organic, 3 reinstall, 4 reattributed); opens and events
    -- 1 attributed, 2 organic, 5 unattributed.
    outcome      smallint NOT NULL DEFAULT 0
) PARTITION BY RANGE (received_at);

CREATE TABLE unmo.records_default PARTITION OF unmo.records DEFAULT;
CREATE INDEX records_app_seq ON unmo.records (app_id, seq);

-- The attribution result of every install record, kept after its records
-- partition is dropped: what GET /v1/installs/{id} and /v1/attribution read.
CREATE TABLE unmo.installs (
    device_key     bigint NOT NULL,
    app_id         bigint NOT NULL,
    record_id      text NOT NULL,
    received_at    timestamptz NOT NULL,
    seq            bigint NOT NULL,
    ord            integer NOT NULL,
    ts             timestamptz NOT NULL,
    device_hashes  bigint[] NOT NULL,      -- its typed identifier hashes (unmo.ingest.batch.device_hash), as signed int8
    status         text NOT NULL,
    touch          text,
    match          text,
    touch_id       text,
    touch_ts       timestamptz,
    network        text,
    campaign       text,
    adset          text,
    ad             text,
    site           text,
    ctit_s         double precision,
    rejected       jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (device_key, app_id, record_id)
);
CREATE INDEX installs_app_record ON unmo.installs (app_id, record_id);
CREATE INDEX installs_app_ts ON unmo.installs (app_id, ts);
CREATE INDEX installs_app_seq ON unmo.installs (app_id, seq);
CREATE INDEX installs_device_hashes ON unmo.installs USING gin (device_hashes);

-- What the Customer Success Tracker reads: per app and minute, records by kind
-- and outcome, batch latency buckets and server errors (docs/tracker.md).
CREATE TABLE unmo.ingest_minute (
    app_id        bigint NOT NULL,
    minute        timestamptz NOT NULL,
    server        text NOT NULL,            -- host:port:pid of the ingest process
    batches       bigint NOT NULL DEFAULT 0,
    accepted      bigint NOT NULL DEFAULT 0,
    duplicates    bigint NOT NULL DEFAULT 0,
    rejected      bigint NOT NULL DEFAULT 0,
    server_errors bigint NOT NULL DEFAULT 0, -- 5xx answers
    by_kind       jsonb NOT NULL DEFAULT '{}', -- {"click": {"accepted": n, "duplicate": n, "rejected": n}, ...}
    latency_buckets bigint[] NOT NULL,       -- counts per bucket of unmo.metrics.LATENCY_BUCKETS_MS (+Inf last)
    latency_sum_ms double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, minute, server)
);

-- {"click": {"accepted": 3}} + {"click": {"accepted": 1, "duplicate": 2}} -> {"click": {"accepted": 4, "duplicate": 2}}
CREATE FUNCTION unmo.merge_counts(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, inner_obj), '{}'::jsonb) FROM (
        SELECT k, (SELECT jsonb_object_agg(o, total) FROM (
                       SELECT o, sum(n::bigint) AS total FROM (
                           SELECT key AS o, value::text AS n FROM jsonb_each(coalesce(a -> k, '{}'))
                           UNION ALL
                           SELECT key, value::text FROM jsonb_each(coalesce(b -> k, '{}'))) u
                       GROUP BY o) s) AS inner_obj
        FROM (SELECT jsonb_object_keys(coalesce(a, '{}')) AS k UNION SELECT jsonb_object_keys(coalesce(b, '{}'))) keys
    ) t
$$;
