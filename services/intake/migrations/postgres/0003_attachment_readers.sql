-- Organizations besides the appeal's own that read what an object refers to: the federal body an
-- escalation is addressed to reads (and adds to) the incident's files. Granted by ticketing
-- itself when the escalation is opened; a file is readable by the reader when one of its
-- references names an object the reader was granted.
CREATE TABLE attachment_readers (
    kind            TEXT   NOT NULL,                    -- "incident"
    object_id       TEXT   NOT NULL,
    organization_id TEXT   NOT NULL,
    appeal_id       TEXT   NOT NULL,
    granted_by      TEXT   NOT NULL,
    granted_at      BIGINT NOT NULL,
    PRIMARY KEY (kind, object_id, organization_id)
);
