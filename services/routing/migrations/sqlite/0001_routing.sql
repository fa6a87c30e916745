-- SQLite: the same tables as migrations/postgres/0001_routing.sql. Booleans are INTEGER 0/1:
-- the Any driver cannot decode columns declared BOOLEAN in SQLite.
-- The routing service's tables: the classifier, the organizations directory, auto-rules and
-- the decisions taken. Ids are TEXT, times BIGINT microseconds since the Unix epoch (UTC),
-- lists JSON arrays in TEXT; every integer is BIGINT so that both dialects read it as i64.

-- Bumped in the transaction of every change of its scope. Cache keys carry the version, so a
-- committed change can never be served from a stale cache entry (docs/adr/0003).
CREATE TABLE routing_versions (
    scope   TEXT PRIMARY KEY,        -- 'classifier' (categories, subcategories, facts) or 'directory' (regions, organizations, auto-rules)
    version BIGINT NOT NULL
);
INSERT INTO routing_versions (scope, version) VALUES ('classifier', 0), ('directory', 0);

CREATE TABLE regions (
    code                    TEXT PRIMARY KEY,   -- two-digit code, e.g. '41'
    name                    TEXT NOT NULL,
    time_zone               TEXT NOT NULL,      -- IANA, e.g. 'Asia/Kamchatka'
    cabinet_organization_id TEXT NOT NULL,      -- the addressee of last resort
    updated_at              BIGINT NOT NULL
);

CREATE TABLE categories (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    active     INTEGER NOT NULL,
    position   BIGINT NOT NULL,                 -- display order
    updated_at BIGINT NOT NULL
);

CREATE TABLE subcategories (
    id          TEXT PRIMARY KEY,
    category_id TEXT NOT NULL REFERENCES categories (id),
    name        TEXT NOT NULL,
    active      INTEGER NOT NULL,
    position    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX subcategories_category ON subcategories (category_id);

CREATE TABLE facts (
    id                        TEXT PRIMARY KEY,
    subcategory_id            TEXT NOT NULL REFERENCES subcategories (id),
    name                      TEXT NOT NULL,
    addressee_kind            TEXT NOT NULL,    -- 'picked', 'regional' or 'federal'
    addressee_type            TEXT NOT NULL,    -- organization type for picked and regional, else ''
    addressee_organization_id TEXT NOT NULL,    -- the federal body, else ''
    period_days               BIGINT NOT NULL,  -- 0: the standard or fast-track period
    working_days              INTEGER NOT NULL,
    fast_track_default        INTEGER NOT NULL,
    fast_track_regions        TEXT NOT NULL,    -- JSON array of region codes
    not_fast_track_regions    TEXT NOT NULL,    -- JSON array of region codes
    active                    INTEGER NOT NULL,
    position                  BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);
CREATE INDEX facts_subcategory ON facts (subcategory_id);

-- parent_id and region_code are '' when absent (a top organization; a federal body), so the
-- directory can be loaded in any order; references are checked by the service.
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    full_name   TEXT NOT NULL,
    short_name  TEXT NOT NULL,
    address     TEXT NOT NULL,
    email       TEXT NOT NULL,
    region_code TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    connected   INTEGER NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX organizations_region_type ON organizations (region_code, type);
CREATE INDEX organizations_parent ON organizations (parent_id);

CREATE TABLE auto_rules (
    id                     TEXT PRIMARY KEY,
    organization_id        TEXT NOT NULL,
    priority               BIGINT NOT NULL,     -- lower first
    fact_id                TEXT NOT NULL,       -- '' for any fact
    keywords               TEXT NOT NULL,       -- JSON array; empty for any text
    target_organization_id TEXT NOT NULL,
    target_executor_id     TEXT NOT NULL,
    active                 INTEGER NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX auto_rules_organization ON auto_rules (organization_id, priority);

-- One decision per appeal: a redelivered or republished appeal.received finds it and routes
-- nothing twice.
CREATE TABLE routing_decisions (
    appeal_id              TEXT PRIMARY KEY,
    message_id             TEXT NOT NULL,       -- the appeal.received event that caused it
    number                 BIGINT NOT NULL,
    region_code            TEXT NOT NULL,       -- the applicant's region
    fact_id                TEXT NOT NULL,
    organization_id        TEXT NOT NULL,
    organization_region    TEXT NOT NULL,
    time_zone              TEXT NOT NULL,
    period_days            BIGINT NOT NULL,
    working_days           INTEGER NOT NULL,
    fast_track             INTEGER NOT NULL,
    delegated_by_auto_rule INTEGER NOT NULL,
    auto_rule_id           TEXT NOT NULL,
    target_executor_id     TEXT NOT NULL,
    steps                  TEXT NOT NULL,       -- JSON array of {rule, organization_id, reason}
    explanation            TEXT NOT NULL,
    decided_at             BIGINT NOT NULL
);
CREATE INDEX routing_decisions_organization ON routing_decisions (organization_id, decided_at);
