-- Appeals as submitted, and the applicant's view of what happened to them since.
CREATE TABLE appeals (
    -- The platform number people see (e.g. 251819982). AUTOINCREMENT never reuses a number;
    -- SQLite serializes writers, so concurrent submissions never share one.
    number                   INTEGER PRIMARY KEY AUTOINCREMENT,
    id                       TEXT    NOT NULL UNIQUE,
    submitted_by             TEXT    NOT NULL,          -- the caller's subject (applicant, operator, system)
    registered_at            BIGINT  NOT NULL,          -- microseconds since the Unix epoch, UTC
    source                   BIGINT  NOT NULL,          -- pos.v1.Source
    applicant_name           TEXT    NOT NULL,
    applicant_email          TEXT    NOT NULL,
    applicant_phone          TEXT    NOT NULL,
    applicant_account_id     TEXT    NOT NULL,
    region_code              TEXT    NOT NULL,
    category_id              TEXT    NOT NULL,
    subcategory_id           TEXT    NOT NULL,
    fact_id                  TEXT    NOT NULL,
    picked_organization_id   TEXT    NOT NULL,
    -- The text as written, possibly with passport or SNILS numbers (152-FZ): it never leaves
    -- this table. Everything else uses public_text.
    original_text            TEXT    NOT NULL,
    public_text              TEXT    NOT NULL,
    problem_address          TEXT    NOT NULL,
    is_public                INTEGER NOT NULL,
    portal_number            TEXT    NOT NULL,
    -- What the applicant sees: "registered", "routed", then the ticket's status; with the time
    -- of the event that set it, so that reordered events never move it backwards.
    status                   TEXT    NOT NULL,
    status_changed_at        BIGINT  NOT NULL,
    -- The latest routing decision (appeal.routed), empty until there is one.
    routed_organization_id   TEXT,
    routed_organization_name TEXT,
    routed_organization_type BIGINT,
    routed_organization_region TEXT,
    period_days              BIGINT,
    working_days             INTEGER,
    fast_track               INTEGER,
    delegated_by_auto_rule   INTEGER,
    routing_explanation      TEXT,
    routed_at                BIGINT
);
CREATE INDEX appeals_applicant_account ON appeals (applicant_account_id);
-- Numbers start where PostgreSQL's identity starts: the next one is 250000001.
INSERT INTO sqlite_sequence (name, seq) VALUES ('appeals', 250000000);

-- Client request ids, per caller: the same request again returns the first answer.
CREATE TABLE idempotency_keys (
    subject        TEXT   NOT NULL,
    request_id     TEXT   NOT NULL,
    request_sha256 TEXT   NOT NULL,                     -- of the request without its id, to refuse reuse
    appeal_id      TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (subject, request_id)
);

-- Uploaded files: the bytes are in the object store, this is what is known about them.
CREATE TABLE attachments (
    id           TEXT   PRIMARY KEY,
    uploaded_by  TEXT   NOT NULL,                       -- the uploader's subject; only they may attach it
    file_name    TEXT   NOT NULL,
    content_type TEXT   NOT NULL,                       -- as told by the content
    size         BIGINT NOT NULL,
    sha256       TEXT   NOT NULL,
    object_path  TEXT   NOT NULL,
    uploaded_at  BIGINT NOT NULL,
    appeal_id    TEXT,                                  -- set once, by the submission that attaches it
    position     BIGINT
);
CREATE INDEX attachments_appeal ON attachments (appeal_id);
CREATE INDEX attachments_unattached ON attachments (uploaded_at) WHERE appeal_id IS NULL;
