-- The workflow: a ticket's stage, its answer, deadlines from the SLA service, and reroutes.
-- A rerouted appeal gets a new ticket at its new addressee; the old one stays in its
-- organization's folders, pointing at its successor. So the appeal is unique only among current
-- tickets. SQLite cannot drop a column's UNIQUE, so both tables are rebuilt (renaming updates the
-- history's foreign key to the new table).
CREATE TABLE tickets_v2 (
    id                      TEXT    PRIMARY KEY,
    appeal_id               TEXT    NOT NULL,
    number                  BIGINT  NOT NULL,
    organization_id         TEXT    NOT NULL,
    organization_short_name TEXT    NOT NULL,
    organization_type       INTEGER NOT NULL,
    folder                  TEXT    NOT NULL,
    status                  TEXT    NOT NULL,
    fast_track              INTEGER NOT NULL,
    delegated_by_auto_rule  INTEGER NOT NULL,
    source                  INTEGER NOT NULL,
    region_code             TEXT    NOT NULL,
    category_id             TEXT    NOT NULL,
    subcategory_id          TEXT    NOT NULL,
    fact_id                 TEXT    NOT NULL,
    public_text             TEXT    NOT NULL,
    problem_address         TEXT    NOT NULL,
    period_days             INTEGER NOT NULL,
    working_days            INTEGER NOT NULL,
    assignee_id             TEXT    NOT NULL DEFAULT '',
    received_at             BIGINT  NOT NULL,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    version                 BIGINT  NOT NULL,
    trace_id                TEXT    NOT NULL,
    applicant_account_id    TEXT    NOT NULL DEFAULT '',
    applicant_name          TEXT    NOT NULL DEFAULT '',
    time_zone               TEXT    NOT NULL DEFAULT '',
    superseded_by           TEXT    NOT NULL DEFAULT '',
    answer_due              BIGINT,
    execution_due           BIGINT,
    overdue                 INTEGER NOT NULL DEFAULT 0,
    review_round            INTEGER NOT NULL DEFAULT 1,
    answer_type             TEXT    NOT NULL DEFAULT '',
    answer_text             TEXT    NOT NULL DEFAULT '',
    answer_attachment_ids   TEXT    NOT NULL DEFAULT '',
    answer_follow_up_at     BIGINT,
    answer_basis            TEXT    NOT NULL DEFAULT '',
    rating                  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tickets_v2 (id, appeal_id, number, organization_id, organization_short_name, organization_type, folder,
    status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id,
    public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, updated_at,
    version, trace_id)
SELECT id, appeal_id, number, organization_id, organization_short_name, organization_type, folder,
    status, fast_track, delegated_by_auto_rule, source, region_code, category_id, subcategory_id, fact_id,
    public_text, problem_address, period_days, working_days, assignee_id, received_at, created_at, updated_at,
    version, trace_id
FROM tickets;

CREATE TABLE ticket_history_v2 (
    ticket_id   TEXT   NOT NULL REFERENCES tickets_v2 (id),
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    from_folder TEXT   NOT NULL,
    to_folder   TEXT   NOT NULL,
    comment     TEXT   NOT NULL,
    from_status TEXT   NOT NULL DEFAULT '',
    to_status   TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (ticket_id, seq)
);
INSERT INTO ticket_history_v2 (ticket_id, seq, at, actor, action, from_folder, to_folder, comment)
SELECT ticket_id, seq, at, actor, action, from_folder, to_folder, comment FROM ticket_history;
DROP TABLE ticket_history;
DROP TABLE tickets;
ALTER TABLE tickets_v2 RENAME TO tickets;
ALTER TABLE ticket_history_v2 RENAME TO ticket_history;

CREATE INDEX tickets_folder_received ON tickets (organization_id, folder, received_at, id);
CREATE UNIQUE INDEX tickets_current_appeal ON tickets (appeal_id) WHERE superseded_by = '';
CREATE INDEX tickets_appeal ON tickets (appeal_id);
CREATE INDEX tickets_applicant ON tickets (applicant_account_id, received_at);
CREATE INDEX tickets_folder_answer_due ON tickets (organization_id, folder, (COALESCE(answer_due, 9223372036854775807)), id);
-- The list over all folders, by either key.
CREATE INDEX tickets_received ON tickets (organization_id, received_at, id);
CREATE INDEX tickets_answer_due ON tickets (organization_id, (COALESCE(answer_due, 9223372036854775807)), id);

CREATE TABLE staff (
    organization_id TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    full_name       TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    active          INTEGER NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (organization_id, subject)
);

CREATE TABLE reminders (
    ticket_id  TEXT    NOT NULL REFERENCES tickets (id),
    due_at     BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ticket_id, due_at)
);
CREATE INDEX reminders_due ON reminders (done, due_at);

-- Per-organization answer templates; placeholders are checked when a template is saved.
CREATE TABLE answer_templates (
    id              TEXT   PRIMARY KEY,
    organization_id TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
