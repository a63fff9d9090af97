-- Report rollups off the write path (docs/reports.md).
--
-- Before: every flush summed its records into report_delta / cohort_delta and
-- folded them into the rollups every 30 s, inside the flush's transaction.
-- Now: a flush stores with each record the two things the reports need that
-- its other columns do not hold (records.install_ms, records.ctit_rejected),
-- and a folder (unmo.reports.rollup.fold) aggregates an app's records with
-- seq in (report_watermark.seq, app_log.seq] into the rollups, advancing the
-- watermark in the same transaction under the watermark row's lock: every
-- record is counted exactly once.
--
-- Upgrading: stop the servers of the previous version first.  A flush of one
-- still running waits for this migration (the lock below) and then fails
-- (report_delta is gone) and rolls back: its requests are answered 503 and
-- sent again; nothing is lost or counted twice.

-- No flush under way while the watermarks are taken: a flush locks its apps'
-- app_log rows first (ROW SHARE), which EXCLUSIVE waits for and then blocks.
LOCK TABLE unmo.app_log IN EXCLUSIVE MODE;

-- Nullable, no default: no table rewrite (PostgreSQL docs, ALTER TABLE).
ALTER TABLE unmo.records
    -- opens and events: the ts (epoch milliseconds) of the install they inherit; cohort reports
    ADD COLUMN install_ms bigint,
    -- installs: the campaigns ([network, campaign, adset, ad, site]) of the touches the install skipped
    -- as CTIT anomalies, one entry per touch; daily report's ctit_rejected_touches.  (installs.rejected
    -- names those touches by record id only, and records has no index by record id.)
    ADD COLUMN ctit_rejected jsonb;

-- Per app: every record with records.seq <= seq is in the rollups.
CREATE TABLE unmo.report_watermark (
    app_id  bigint PRIMARY KEY,
    seq     bigint NOT NULL DEFAULT 0
);
-- Records stored before this migration are in the rollups or the deltas (folded below).
INSERT INTO unmo.report_watermark (app_id, seq) SELECT app_id, seq FROM unmo.app_log;

-- A group's key, computed by the fold's statement itself (before: XXH64 in Python): 64 bits of SHA-256
-- of the grain, the source and the values, each value length-prefixed (NULL is '-'), so two different
-- groups never give the same text.  The campaign grain passes NULL for ad and site.  STABLE: convert_to is.
CREATE FUNCTION unmo.report_key(grain integer, source integer, network text, campaign text, adset text, ad text,
                                site text, platform text, currency text)
RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ('x' || encode(substr(sha256(convert_to(
        grain::text || '|' || source::text
        || '|' || coalesce(length(network)::text || ':' || network, '-')
        || '|' || coalesce(length(campaign)::text || ':' || campaign, '-')
        || '|' || coalesce(length(adset)::text || ':' || adset, '-')
        || '|' || coalesce(length(ad)::text || ':' || ad, '-')
        || '|' || coalesce(length(site)::text || ':' || site, '-')
        || '|' || coalesce(length(platform)::text || ':' || platform, '-')
        || '|' || coalesce(length(currency)::text || ':' || currency, '-'), 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint
$$;

-- Re-key the rollups (their label columns hold exactly their grain's values).
UPDATE unmo.report_rollup
SET group_key = unmo.report_key(grain, source, network, campaign, adset, ad, site, platform, currency);
UPDATE unmo.cohort_rollup
SET group_key = unmo.report_key(grain, source, network, campaign, adset, ad, site, platform, currency);

-- Fold what is left in the deltas, at every level and grain (as unmo.reports.rollup.fold does).
CREATE TEMP TABLE report_levels (level smallint, grain smallint, width interval) ON COMMIT DROP;
INSERT INTO report_levels VALUES (0, 0, '15 minutes'), (2, 0, '1 day'), (0, 1, '15 minutes'), (1, 1, '1 hour'),
                                 (2, 1, '1 day');

INSERT INTO unmo.report_rollup AS r (app_id, level, bucket, grain, group_key, source, network, campaign, adset,
                                     ad, site, platform, currency, clicks, impressions, installs, reattributions,
                                     reinstalls, organic_installs, opens, events, revenue_micros, ctit_rejected,
                                     blocklisted)
SELECT app_id, level, bucket, grain, unmo.report_key(grain, source, network, campaign, adset, ad, site, platform,
                                                     currency),
       source, network, campaign, adset, ad, site, platform, currency, sum(clicks), sum(impressions), sum(installs),
       sum(reattributions), sum(reinstalls), sum(organic_installs), sum(opens), sum(events),
       coalesce(sum(revenue_micros::numeric), 0), sum(ctit_rejected), sum(blocklisted)
FROM (SELECT d.app_id, l.level, date_bin(l.width, d.bucket, timestamptz '2000-01-01 00:00+00') AS bucket, l.grain,
             d.source, d.network, d.campaign, d.adset, CASE WHEN l.grain = 0 THEN d.ad END AS ad,
             CASE WHEN l.grain = 0 THEN d.site END AS site, d.platform, d.currency, d.clicks, d.impressions,
             d.installs, d.reattributions, d.reinstalls, d.organic_installs, d.opens, d.events, d.revenue_micros,
             d.ctit_rejected, d.blocklisted
      FROM unmo.report_delta d CROSS JOIN report_levels l) x
GROUP BY app_id, level, bucket, grain, source, network, campaign, adset, ad, site, platform, currency
ON CONFLICT (app_id, grain, level, bucket, group_key) DO UPDATE SET
    clicks = r.clicks + excluded.clicks, impressions = r.impressions + excluded.impressions,
    installs = r.installs + excluded.installs, reattributions = r.reattributions + excluded.reattributions,
    reinstalls = r.reinstalls + excluded.reinstalls, organic_installs = r.organic_installs + excluded.organic_installs,
    opens = r.opens + excluded.opens, events = r.events + excluded.events,
    revenue_micros = r.revenue_micros + excluded.revenue_micros, ctit_rejected = r.ctit_rejected + excluded.ctit_rejected,
    blocklisted = r.blocklisted + excluded.blocklisted;

INSERT INTO unmo.cohort_rollup AS r (app_id, level, bucket, grain, group_key, day_n, source, network, campaign,
                                     adset, ad, site, platform, currency, opens, events, revenue_micros, retained)
SELECT app_id, level, bucket, grain, unmo.report_key(grain, source, network, campaign, adset, ad, site, platform,
                                                     currency),
       day_n, source, network, campaign, adset, ad, site, platform, currency, sum(opens), sum(events),
       coalesce(sum(revenue_micros::numeric), 0), sum(retained)
FROM (SELECT d.app_id, l.level, date_bin(l.width, d.bucket, timestamptz '2000-01-01 00:00+00') AS bucket, l.grain,
             d.day_n, d.source, d.network, d.campaign, d.adset, CASE WHEN l.grain = 0 THEN d.ad END AS ad,
             CASE WHEN l.grain = 0 THEN d.site END AS site, d.platform, d.currency, d.opens, d.events,
             d.revenue_micros, d.retained
      FROM unmo.cohort_delta d CROSS JOIN report_levels l) x
GROUP BY app_id, level, bucket, grain, day_n, source, network, campaign, adset, ad, site, platform, currency
ON CONFLICT (app_id, grain, level, bucket, group_key, day_n) DO UPDATE SET
    opens = r.opens + excluded.opens, events = r.events + excluded.events,
    revenue_micros = r.revenue_micros + excluded.revenue_micros, retained = r.retained + excluded.retained;

DROP TABLE unmo.report_delta, unmo.cohort_delta;
