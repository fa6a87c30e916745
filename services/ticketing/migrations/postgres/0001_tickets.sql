-- The organization's work on one appeal: one ticket per appeal and addressee.
CREATE TABLE tickets (
    id                      TEXT    PRIMARY KEY,
    appeal_id               TEXT    NOT NULL UNIQUE,
    number                  BIGINT  NOT NULL,
    organization_id         TEXT    NOT NULL,
    organization_short_name TEXT    NOT NULL,
    organization_type       INTEGER NOT NULL,
    folder                  TEXT    NOT NULL,   -- new, in_work, returned, processed, sent_for_approval, returned_to_coordination
    status                  TEXT    NOT NULL,
    fast_track              BOOLEAN NOT NULL,
    delegated_by_auto_rule  BOOLEAN NOT NULL,
    source                  INTEGER NOT NULL,
    region_code             TEXT    NOT NULL,
    category_id             TEXT    NOT NULL,
    subcategory_id          TEXT    NOT NULL,
    fact_id                 TEXT    NOT NULL,
    public_text             TEXT    NOT NULL,
    problem_address         TEXT    NOT NULL,
    period_days             INTEGER NOT NULL,
    working_days            BOOLEAN NOT NULL,
    assignee_id             TEXT    NOT NULL DEFAULT '',
    received_at             BIGINT  NOT NULL,   -- microseconds since the Unix epoch, UTC
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    version                 BIGINT  NOT NULL,
    trace_id                TEXT    NOT NULL
);
-- The cabinet's list: one organization's folder, newest first, with a stable tie-break.
CREATE INDEX tickets_folder_received ON tickets (organization_id, folder, received_at, id);

-- Who did what, when, from which folder to which: append-only.
CREATE TABLE ticket_history (
    ticket_id   TEXT   NOT NULL REFERENCES tickets (id),
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    from_folder TEXT   NOT NULL,
    to_folder   TEXT   NOT NULL,
    comment     TEXT   NOT NULL,
    PRIMARY KEY (ticket_id, seq)
);
