-- The ticket's state is stored once, as its stage's stable code (snake_case, e.g. `in_work`).
-- The folder and the human status line follow from the stage in code, so the `folder` and
-- `status` columns go, and the history keeps stage codes instead of folders and labels.
-- Unassigned is NULL rather than ''. SQLite changes a column only by adding, copying and
-- dropping (no table rebuild: incidents and reminders refer to the tickets); it adds a NOT NULL
-- column only with a default, which no insert relies on.

-- The labels this table has held, and their codes; the folder's first stage stands in for
-- history lines written before 0002 recorded statuses.
CREATE TEMPORARY TABLE stage_codes (label TEXT PRIMARY KEY, code TEXT NOT NULL);
INSERT INTO stage_codes (label, code) VALUES
    ('new', 'new'),
    ('in work', 'in_work'),
    ('executor assigned', 'executor_assigned'),
    ('answer prepared', 'answer_prepared'),
    ('information requested', 'information_requested'),
    ('on agreement', 'on_agreement'),
    ('on approval', 'on_approval'),
    ('answered', 'answered'),
    ('returned for re-review', 'returned'),
    ('accepted by applicant', 'accepted'),
    ('re-review stopped', 'review_stopped'),
    ('rejected', 'rejected'),
    ('redirected', 'redirected'),
    ('returned to coordination', 'returned_to_coordination');
CREATE TEMPORARY TABLE folder_stages (folder TEXT PRIMARY KEY, code TEXT NOT NULL);
INSERT INTO folder_stages (folder, code) VALUES
    ('new', 'new'),
    ('in_work', 'in_work'),
    ('returned', 'returned'),
    ('processed', 'answered'),
    ('sent_for_approval', 'on_approval'),
    ('returned_to_coordination', 'returned_to_coordination');

ALTER TABLE tickets ADD COLUMN stage TEXT NOT NULL DEFAULT '';
-- A status outside the list gives NULL, and the NOT NULL column fails the migration.
UPDATE tickets SET stage = (SELECT code FROM stage_codes WHERE label = tickets.status);
DROP INDEX tickets_folder_received;
DROP INDEX tickets_folder_answer_due;
ALTER TABLE tickets DROP COLUMN folder;
ALTER TABLE tickets DROP COLUMN status;
-- The list in one folder: a folder is `stage IN (its stages)` (see the PostgreSQL tree).
CREATE INDEX tickets_stage_received ON tickets (organization_id, stage, received_at, id);
CREATE INDEX tickets_stage_answer_due ON tickets (organization_id, stage, (COALESCE(answer_due, 9223372036854775807)), id);

ALTER TABLE tickets ADD COLUMN assignee TEXT;
UPDATE tickets SET assignee = NULLIF(assignee_id, '');
ALTER TABLE tickets DROP COLUMN assignee_id;
ALTER TABLE tickets RENAME COLUMN assignee TO assignee_id;

ALTER TABLE ticket_history ADD COLUMN from_stage TEXT;
ALTER TABLE ticket_history ADD COLUMN to_stage TEXT NOT NULL DEFAULT '';
-- The first line has no stage before it: from_stage stays NULL there.
UPDATE ticket_history SET
    from_stage = COALESCE(
        (SELECT code FROM stage_codes WHERE label = ticket_history.from_status),
        (SELECT code FROM folder_stages WHERE folder = ticket_history.from_folder)),
    to_stage = COALESCE(
        (SELECT code FROM stage_codes WHERE label = ticket_history.to_status),
        (SELECT code FROM folder_stages WHERE folder = ticket_history.to_folder));
ALTER TABLE ticket_history DROP COLUMN from_folder;
ALTER TABLE ticket_history DROP COLUMN to_folder;
ALTER TABLE ticket_history DROP COLUMN from_status;
ALTER TABLE ticket_history DROP COLUMN to_status;

DROP TABLE stage_codes;
DROP TABLE folder_stages;
