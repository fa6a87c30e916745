-- One answer clock per appeal, armed when the appeal is routed.
CREATE TABLE clocks (
    appeal_id       TEXT    PRIMARY KEY,
    organization_id TEXT    NOT NULL,
    region_code     TEXT    NOT NULL,
    time_zone       TEXT    NOT NULL,
    registered_at   BIGINT  NOT NULL,   -- microseconds since the Unix epoch, UTC
    period_days     INTEGER NOT NULL,
    working_days    BOOLEAN NOT NULL,
    fast_track      BOOLEAN NOT NULL,
    due_at          BIGINT,             -- NULL until a working-day calendar can count it
    armed_at        BIGINT  NOT NULL
);
