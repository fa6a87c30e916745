-- Staff upload too: the organization they uploaded for (empty for applicants, operators and
-- systems) lets the organization's other staff read the file.
ALTER TABLE attachments ADD COLUMN uploaded_for_organization TEXT NOT NULL DEFAULT '';

-- What refers to an attachment besides the appeal it came with: an answer (object_id = the
-- ticket) or an incident. A referenced attachment is never an orphan, and its readers are those
-- of the reference: the appeal's applicant for an answer, the organization for both.
CREATE TABLE attachment_references (
    attachment_id   TEXT   NOT NULL,
    kind            TEXT   NOT NULL,                    -- "answer" or "incident"
    object_id       TEXT   NOT NULL,
    appeal_id       TEXT   NOT NULL,
    organization_id TEXT   NOT NULL,                    -- the organization that referred to it
    claimed_by      TEXT   NOT NULL,
    claimed_at      BIGINT NOT NULL,
    PRIMARY KEY (attachment_id, kind, object_id)
);
CREATE INDEX attachment_references_appeal ON attachment_references (appeal_id);
