-- The workflow: a ticket's stage, its answer, deadlines from the SLA service, and reroutes.
-- A rerouted appeal gets a new ticket at its new addressee; the old one stays in its
-- organization's folders, pointing at its successor. So the appeal is unique only among current
-- tickets.
ALTER TABLE tickets DROP CONSTRAINT tickets_appeal_id_key;
ALTER TABLE tickets
    ADD COLUMN applicant_account_id  TEXT    NOT NULL DEFAULT '',
    ADD COLUMN applicant_name        TEXT    NOT NULL DEFAULT '',
    ADD COLUMN time_zone             TEXT    NOT NULL DEFAULT '',
    ADD COLUMN superseded_by         TEXT    NOT NULL DEFAULT '',
    ADD COLUMN answer_due            BIGINT,
    ADD COLUMN execution_due         BIGINT,
    ADD COLUMN overdue               BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN review_round          INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN answer_type           TEXT    NOT NULL DEFAULT '',
    ADD COLUMN answer_text           TEXT    NOT NULL DEFAULT '',
    ADD COLUMN answer_attachment_ids TEXT    NOT NULL DEFAULT '',
    ADD COLUMN answer_follow_up_at   BIGINT,
    ADD COLUMN answer_basis          TEXT    NOT NULL DEFAULT '',
    ADD COLUMN rating                INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX tickets_current_appeal ON tickets (appeal_id) WHERE superseded_by = '';
CREATE INDEX tickets_appeal ON tickets (appeal_id);
CREATE INDEX tickets_applicant ON tickets (applicant_account_id, received_at);
-- The list sorted by deadline.
CREATE INDEX tickets_folder_answer_due ON tickets (organization_id, folder, (COALESCE(answer_due, 9223372036854775807)), id);
-- The list over all folders, by either key.
CREATE INDEX tickets_received ON tickets (organization_id, received_at, id);
CREATE INDEX tickets_answer_due ON tickets (organization_id, (COALESCE(answer_due, 9223372036854775807)), id);

ALTER TABLE ticket_history
    ADD COLUMN from_status TEXT NOT NULL DEFAULT '',
    ADD COLUMN to_status   TEXT NOT NULL DEFAULT '';

-- The organization's staff directory (org_admin manages it; notify reads it).
CREATE TABLE staff (
    organization_id TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    full_name       TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    roles           TEXT    NOT NULL,   -- space-separated role names
    active          BOOLEAN NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (organization_id, subject)
);

-- Postponed answers: the organization promised to come back on a date.
CREATE TABLE reminders (
    ticket_id  TEXT    NOT NULL REFERENCES tickets (id),
    due_at     BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE,
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
