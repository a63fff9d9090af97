-- Report rollups (docs/reports.md), kept by the ingest path in the transaction
-- that stores the records they count (unmo.reports.rollup), so that they are
-- exactly as durable as the records.
--
-- Buckets are 15 minutes of the records' ts, UTC-aligned: every UTC offset any
-- IANA time zone has used since 2000 is a multiple of 15 minutes
-- (tests/reports/test_timezones.py checks the installed tz database), so every
-- bucket falls inside one local day of any zone and `tz=` reports are exact.
--
-- A group is (source, network, campaign, adset, ad, site, platform, currency);
-- group_key is its XXH64 (unmo.reports.rollup.group_key), so the primary keys
-- stay narrow; the group's values are stored in the row, and reports group by
-- the values, never by the key.  source: 0 a campaign, 1 organic, 2 unattributed.
--
-- Citus: every table is distributed by app_id (in every key), co-located.
-- fillfactor 70 leaves room on each page for HOT updates of the counters (no
-- indexed column changes), so the ingest path's upserts do not grow the indexes
-- (PostgreSQL docs, "Heap-Only Tuples").

CREATE TABLE unmo.report_rollup (
    app_id            bigint NOT NULL,
    bucket            timestamptz NOT NULL,   -- 15-minute bucket of ts
    group_key         bigint NOT NULL,
    source            smallint NOT NULL CHECK (source IN (0, 1, 2)),
    network           text,
    campaign          text,
    adset             text,
    ad                text,
    site              text,
    platform          text,
    currency          text,                   -- only on rows that hold revenue
    clicks            bigint NOT NULL DEFAULT 0,
    impressions       bigint NOT NULL DEFAULT 0,
    installs          bigint NOT NULL DEFAULT 0,   -- attributed + organic + reattributed
    reattributions    bigint NOT NULL DEFAULT 0,
    reinstalls        bigint NOT NULL DEFAULT 0,
    organic_installs  bigint NOT NULL DEFAULT 0,
    opens             bigint NOT NULL DEFAULT 0,
    events            bigint NOT NULL DEFAULT 0,
    revenue_micros    bigint NOT NULL DEFAULT 0,   -- millionths of the currency unit
    ctit_rejected     bigint NOT NULL DEFAULT 0,   -- by the install's bucket, the touch's campaign
    blocklisted       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, bucket, group_key)
) WITH (fillfactor = 70);

-- Cohorts: opens and events by the 15-minute bucket of the install they
-- inherit from and the day after it (day_n = whole 24 h periods since the
-- install), plus the devices seen on that day for the first time (retained).
CREATE TABLE unmo.report_cohort (
    app_id            bigint NOT NULL,
    bucket            timestamptz NOT NULL,   -- 15-minute bucket of the install's ts
    group_key         bigint NOT NULL,
    day_n             integer NOT NULL CHECK (day_n >= 0),
    source            smallint NOT NULL CHECK (source IN (0, 1)),
    network           text,
    campaign          text,
    adset             text,
    ad                text,
    site              text,
    platform          text,
    currency          text,
    opens             bigint NOT NULL DEFAULT 0,
    events            bigint NOT NULL DEFAULT 0,
    revenue_micros    bigint NOT NULL DEFAULT 0,
    retained          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, bucket, group_key, day_n)
) WITH (fillfactor = 70);

-- One row per device, install and day on which the device was active: what
-- makes `retained` count each device once per day although it sends many
-- records (the insert that creates the row is the one that counts it).
CREATE TABLE unmo.report_active (
    app_id       bigint NOT NULL,
    device_key   bigint NOT NULL,
    install_ms   bigint NOT NULL,         -- the install's ts, epoch milliseconds
    day_n        integer NOT NULL,
    PRIMARY KEY (app_id, device_key, install_ms, day_n)
);
