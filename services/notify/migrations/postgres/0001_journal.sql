-- Every event notify must act upon, in arrival order: the source of deliveries and of the
-- resumable stream for external systems.
CREATE TABLE journal (
    seq         BIGSERIAL PRIMARY KEY,
    message_id  TEXT   NOT NULL UNIQUE,
    event       TEXT   NOT NULL,
    region_code TEXT   NOT NULL,
    appeal_id   TEXT   NOT NULL,
    type_name   TEXT   NOT NULL,
    payload     BYTEA  NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX journal_appeal ON journal (appeal_id, seq);

-- One row per (event, recipient, channel): a message is sent at most once per row.
CREATE TABLE deliveries (
    id           TEXT    PRIMARY KEY,
    message_id   TEXT    NOT NULL,
    appeal_id    TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    delivered_at BIGINT,
    UNIQUE (message_id, recipient, channel)
);
CREATE INDEX deliveries_appeal ON deliveries (appeal_id, created_at);
