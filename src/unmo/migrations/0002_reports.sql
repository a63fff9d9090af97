-- Report rollups (docs/reports.md), kept by the ingest path in the transaction
-- that stores the records they count (unmo.reports.rollup): exactly as durable
-- as the records, written once by the process that commits them.
--
-- Write side, LSM-style: every flush appends its records, summed per
-- 15-minute bucket and group, to the *_delta tables (binary COPY: no index
-- lookups, no row locks); about every 30 s a flush of the app folds the app's
-- deltas into the consolidated tables in one set-based statement.  Readers add
-- the few deltas not folded yet.  Upserting every flush's rows instead cost
-- 5x more per row (bench/test_reports.py, docs/reports.md).
--
-- Read side, three time levels: 15-minute buckets (quarter), hours and UTC
-- days.  Every UTC offset any IANA zone has used since 2000 is a multiple of
-- 15 minutes (tests/reports/test_parameters.py reads the tz database), so a
-- local day of any zone is an exact sum of whole UTC days plus or minus the
-- hours and quarters at its edges (unmo.reports.levels).
--
-- Grains: 0 full (network, campaign, adset, ad, site, platform), as quarters
-- and days; 1 campaign (network, campaign, adset, platform), as quarters,
-- hours and days: what most reports group by, and what stays small however
-- many sites and creatives a network reports.  A group is (source, its grain's columns,
-- currency); group_key is its XXH64 (unmo.reports.rollup.group_key); reports
-- group by the values, never by the key.  source: 0 a campaign, 1 organic,
-- 2 unattributed.  Revenue is in millionths of the currency unit, exact.
--
-- Citus: every table is distributed by app_id (in every key), co-located.
-- fillfactor 70 leaves room on each page for HOT updates of the counters (no
-- indexed column changes), so folding does not grow the indexes (PostgreSQL
-- docs, "Heap-Only Tuples").

CREATE TABLE unmo.report_delta (
    app_id            bigint NOT NULL,
    bucket            timestamptz NOT NULL,   -- 15-minute bucket of ts
    group_key         bigint NOT NULL,        -- full grain
    camp_key          bigint NOT NULL,        -- campaign grain
    source            smallint NOT NULL,
    network           text,
    campaign          text,
    adset             text,
    ad                text,
    site              text,
    platform          text,
    currency          text,
    clicks            bigint NOT NULL,
    impressions       bigint NOT NULL,
    installs          bigint NOT NULL,        -- attributed + organic + reattributed
    reattributions    bigint NOT NULL,
    reinstalls        bigint NOT NULL,
    organic_installs  bigint NOT NULL,
    opens             bigint NOT NULL,
    events            bigint NOT NULL,
    revenue_micros    text,                   -- an integer (numeric when folded); text: binary COPY has no numeric
    ctit_rejected     bigint NOT NULL,        -- by the install's bucket, the rejected touch's campaign
    blocklisted       bigint NOT NULL
);
CREATE INDEX report_delta_app_bucket ON unmo.report_delta (app_id, bucket);

CREATE TABLE unmo.report_rollup (
    app_id            bigint NOT NULL,
    level             smallint NOT NULL CHECK (level IN (0, 1, 2)),   -- 0 quarter, 1 hour, 2 UTC day
    bucket            timestamptz NOT NULL,
    grain             smallint NOT NULL CHECK (grain IN (0, 1)),
    group_key         bigint NOT NULL,
    source            smallint NOT NULL CHECK (source IN (0, 1, 2)),
    network           text,
    campaign          text,
    adset             text,
    ad                text,
    site              text,
    platform          text,
    currency          text,
    clicks            bigint NOT NULL DEFAULT 0,
    impressions       bigint NOT NULL DEFAULT 0,
    installs          bigint NOT NULL DEFAULT 0,
    reattributions    bigint NOT NULL DEFAULT 0,
    reinstalls        bigint NOT NULL DEFAULT 0,
    organic_installs  bigint NOT NULL DEFAULT 0,
    opens             bigint NOT NULL DEFAULT 0,
    events            bigint NOT NULL DEFAULT 0,
    revenue_micros    numeric NOT NULL DEFAULT 0,
    ctit_rejected     bigint NOT NULL DEFAULT 0,
    blocklisted       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, grain, level, bucket, group_key)
) WITH (fillfactor = 70);

-- Cohorts: opens and events by the 15-minute bucket of the install they
-- inherit from and the day after it (day_n = whole 24 h periods since the
-- install), plus the devices active on that day (retained, counted once).
CREATE TABLE unmo.cohort_delta (
    app_id            bigint NOT NULL,
    bucket            timestamptz NOT NULL,   -- 15-minute bucket of the install's ts
    group_key         bigint NOT NULL,
    camp_key          bigint NOT NULL,
    day_n             integer NOT NULL,
    source            smallint NOT NULL,
    network           text,
    campaign          text,
    adset             text,
    ad                text,
    site              text,
    platform          text,
    currency          text,
    opens             bigint NOT NULL,
    events            bigint NOT NULL,
    revenue_micros    text,
    retained          bigint NOT NULL
);
CREATE INDEX cohort_delta_app_bucket ON unmo.cohort_delta (app_id, bucket);

CREATE TABLE unmo.cohort_rollup (
    app_id            bigint NOT NULL,
    level             smallint NOT NULL CHECK (level IN (0, 1, 2)),
    bucket            timestamptz NOT NULL,
    grain             smallint NOT NULL CHECK (grain IN (0, 1)),
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
    revenue_micros    numeric NOT NULL DEFAULT 0,
    retained          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, grain, level, bucket, group_key, day_n)
) WITH (fillfactor = 70);

-- One row per device, install and day on which the device was active: what
-- makes `retained` count a device once per day although it sends many
-- records (the insert that creates the row is the one that counts it).
CREATE TABLE unmo.report_active (
    app_id       bigint NOT NULL,
    device_key   bigint NOT NULL,
    install_ms   bigint NOT NULL,         -- the install's ts, epoch milliseconds
    day_n        integer NOT NULL,
    PRIMARY KEY (app_id, device_key, install_ms, day_n)
);
