-- The stream filters by organization; older rows predate the column.
ALTER TABLE journal ADD COLUMN organization_id TEXT NOT NULL DEFAULT '';

-- What notify knows of each appeal, gathered from its events, to address and fill messages.
CREATE TABLE appeals (
    appeal_id         TEXT   PRIMARY KEY,
    number            BIGINT NOT NULL DEFAULT 0,
    applicant_name    TEXT   NOT NULL DEFAULT '',
    applicant_email   TEXT   NOT NULL DEFAULT '',
    category_id       TEXT   NOT NULL DEFAULT '',
    region_code       TEXT   NOT NULL DEFAULT '',
    organization_id   TEXT   NOT NULL DEFAULT '',
    organization_name TEXT   NOT NULL DEFAULT '',
    time_zone         TEXT   NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL DEFAULT 0,
    deadline          BIGINT,
    execution_due     BIGINT,
    status            TEXT   NOT NULL DEFAULT '',
    status_at         BIGINT NOT NULL DEFAULT 0,
    received          INTEGER NOT NULL DEFAULT 0
);

-- "Message arrived" goes once per (appeal, organization), however often its deadline moves.
CREATE TABLE arrivals (
    appeal_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    PRIMARY KEY (appeal_id, organization_id)
);

-- The ledger: one row per (event, recipient, channel); a message is sent at most once per row.
-- The first part's table was never written to.
DROP TABLE deliveries;
CREATE TABLE deliveries (
    id              TEXT    PRIMARY KEY,
    message_id      TEXT    NOT NULL,
    appeal_id       TEXT    NOT NULL,
    organization_id TEXT    NOT NULL DEFAULT '',
    event           TEXT    NOT NULL,
    audience        TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    sending_at      BIGINT,
    delivered_at    BIGINT,
    -- Times this row was found "sending" after a crash and sent again: possible duplicates.
    resent          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (message_id, recipient, channel)
);
CREATE INDEX deliveries_appeal ON deliveries (appeal_id, created_at);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- The organization admin's notification settings.
CREATE TABLE org_settings (
    organization_id TEXT   PRIMARY KEY,
    time_zone       TEXT   NOT NULL,
    quiet_from      TEXT   NOT NULL DEFAULT '',
    quiet_until     TEXT   NOT NULL DEFAULT '',
    digest_enabled  INTEGER NOT NULL DEFAULT 0,
    digest_at       TEXT   NOT NULL DEFAULT '',
    -- Local date of the last digest sent, so each day's goes once.
    last_digest_on  TEXT   NOT NULL DEFAULT '',
    -- Set once the admin saved notifications: from then on no rows means none, not the defaults.
    customized      INTEGER NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);

-- Configured notifications; an organization without rows uses the built-in defaults.
CREATE TABLE org_notifications (
    id              TEXT   NOT NULL,
    organization_id TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    addresses       TEXT   NOT NULL,
    roles           TEXT   NOT NULL,
    template        TEXT   NOT NULL,
    enabled         INTEGER NOT NULL,
    description     TEXT   NOT NULL DEFAULT '',
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (organization_id, id)
);
