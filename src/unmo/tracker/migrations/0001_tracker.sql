-- Customer Success Tracker schema (spec: tracker.md; docs/tracker.md).  It lives in
-- its own schema of the ingest database and only reads unmo.* (apps it created,
-- records, installs, ingest_minute): the ingest path never waits on it.

CREATE SCHEMA IF NOT EXISTS tracker;

CREATE TABLE tracker.customers (
    customer_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company          text NOT NULL CHECK (length(company) BETWEEN 1 AND 100),
    vertical         text NOT NULL CHECK (vertical IN ('gaming', 'ecommerce', 'fintech', 'other')),
    provider         text NOT NULL CHECK (provider IN ('appsflyer', 'adjust', 'branch', 'singular', 'kochava', 'none')),
    events_per_day   bigint NOT NULL CHECK (events_per_day >= 0),
    integration      text NOT NULL CHECK (integration IN ('sdk', 's2s', 'hybrid')),
    platforms        text[] NOT NULL CHECK (platforms <@ ARRAY['ios', 'android'] AND cardinality(platforms) >= 1),
    plan_price       numeric(12, 2) NOT NULL CHECK (plan_price >= 0),   -- USD per month
    contact_email    text,
    status           text NOT NULL DEFAULT 'onboarding'
                     CHECK (status IN ('onboarding', 'live', 'paused', 'churned')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    first_record_at  timestamptz,          -- received_at of the first accepted record of any of its apps
    live_at          timestamptz,          -- when the tracker saw it (>= first_record_at)
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- One customer per company name, whatever the case: a re-run of the onboarding script is refused
-- instead of creating a second set of apps and keys.
CREATE UNIQUE INDEX customers_company ON tracker.customers (lower(company));

CREATE TABLE tracker.customer_apps (
    customer_id  bigint NOT NULL REFERENCES tracker.customers ON DELETE CASCADE,
    app_id       bigint NOT NULL UNIQUE REFERENCES unmo.apps ON DELETE CASCADE,
    platform     text NOT NULL CHECK (platform IN ('ios', 'android')),
    PRIMARY KEY (customer_id, app_id)
);

-- Every status a customer had and since when: the weekly report asks "who was live at the end of
-- that week", which the current status alone cannot answer.
CREATE TABLE tracker.status_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES tracker.customers ON DELETE CASCADE,
    status       text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_log_customer ON tracker.status_log (customer_id, at);

-- /readyz probes of each ingest server; uptime = ok probes / probes.
CREATE TABLE tracker.probes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    status      integer,                  -- HTTP status, NULL when no answer
    latency_ms  double precision,
    error       text
);
CREATE INDEX probes_at ON tracker.probes (at);

-- Per-conversion list prices of the providers customers come from (editable: PUT /v1/prices/{provider}).
CREATE TABLE tracker.prices (
    provider              text PRIMARY KEY,
    price_per_conversion  numeric(10, 4) NOT NULL CHECK (price_per_conversion >= 0),   -- USD
    source                text NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
-- Seed: approximate list prices as published or widely reported; NOT anyone's contract price.
-- The sources are repeated in docs/tracker.md ("Price table").
INSERT INTO tracker.prices (provider, price_per_conversion, source) VALUES
    ('appsflyer', 0.0700, 'AppsFlyer pricing page, Growth plan (pay as you go): $0.07 per non-organic conversion '
                          '(published list price as of 2022-2023; approximate, contracts differ)'),
    ('adjust',    0.0500, 'Adjust publishes no price list; about $0.05 per attributed install is the figure widely '
                          'reported by buyers and price-comparison sites (approximate)'),
    ('branch',    0.0500, 'Branch Growth plan is sold per MAU; about $0.05 per attributed install is the widely '
                          'reported equivalent (approximate)'),
    ('singular',  0.0500, 'Singular publishes no price list; about $0.05 per attributed install is widely reported '
                          '(approximate)'),
    ('kochava',   0.0300, 'Kochava paid tiers: about $0.03 per attributed install as widely reported; the free tier '
                          'costs nothing (approximate)'),
    ('none',      0.0000, 'no provider today: nothing to save against');

-- Attribution agreement uploads: one row per upload, the disagreements beside it.
CREATE TABLE tracker.agreement_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES tracker.customers ON DELETE CASCADE,
    uploaded_at     timestamptz NOT NULL DEFAULT now(),
    format          text NOT NULL CHECK (format IN ('appsflyer', 'plain')),
    filename        text,
    rows            integer NOT NULL,     -- install rows read
    skipped         integer NOT NULL,     -- rows that were not installs or had no device identifier
    compared        integer NOT NULL,     -- rows whose device unmo has an install for
    agreed          integer NOT NULL,
    not_in_unmo     integer NOT NULL,
    share           double precision      -- agreed / compared, NULL when nothing could be compared
);
CREATE INDEX agreement_runs_customer ON tracker.agreement_runs (customer_id, uploaded_at);

CREATE TABLE tracker.agreement_disagreements (
    run_id            bigint NOT NULL REFERENCES tracker.agreement_runs ON DELETE CASCADE,
    line              integer NOT NULL,   -- line of the uploaded file, so the customer can find the row
    device            text NOT NULL,      -- masked: first 4 and last 4 characters
    reason            text NOT NULL CHECK (reason IN ('network', 'campaign', 'organic_vs_paid', 'not_in_unmo')),
    provider_network  text,
    provider_campaign text,
    unmo_status       text,
    unmo_network      text,
    unmo_campaign     text,
    PRIMARY KEY (run_id, line)
);

-- Satisfaction surveys.  The answer link carries a 256-bit token; only its SHA-256 is stored
-- (like the API keys), so a link can be re-issued but never read back.
CREATE TABLE tracker.surveys (
    survey_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES tracker.customers ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    automatic       boolean NOT NULL DEFAULT false,
    token_hash      bytea UNIQUE CHECK (token_hash IS NULL OR length(token_hash) = 32),
    link_issued_at  timestamptz,
    answered_at     timestamptz,
    csat            smallint CHECK (csat BETWEEN 1 AND 5),
    nps             smallint CHECK (nps BETWEEN 0 AND 10),
    comment         text CHECK (length(comment) <= 4000)
);
-- At most one automatic (post-go-live) survey per customer, even with several trackers running.
CREATE UNIQUE INDEX surveys_automatic ON tracker.surveys (customer_id) WHERE automatic;

CREATE TABLE tracker.feedback (
    feedback_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES tracker.customers ON DELETE CASCADE,
    category     text NOT NULL CHECK (category IN ('bug', 'feature', 'question', 'praise')),
    severity     text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_customer ON tracker.feedback (customer_id, feedback_id);

-- Transactional outbox: written in the transaction that records the feedback, delivered by a
-- background task, so a webhook that is down (or a tracker restart) never loses feedback.
-- body holds the exact bytes that are signed and sent.
CREATE TABLE tracker.outbox (
    delivery_id      uuid PRIMARY KEY,
    feedback_id      bigint NOT NULL REFERENCES tracker.feedback ON DELETE CASCADE,
    body             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX outbox_due ON tracker.outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE tracker.delivery_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES tracker.outbox ON DELETE CASCADE,
    attempt      integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    url          text NOT NULL,
    status       integer,                 -- HTTP status, NULL when no answer
    ok           boolean NOT NULL,
    error        text,
    duration_ms  double precision NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON tracker.delivery_attempts (delivery_id, attempt);
