-- Attachment bytes each caller uploaded per UTC day, for `intake.max_upload_bytes_per_day`:
-- raised in the transaction that stores the upload's row, refused past the cap. Days before
-- yesterday are deleted by the attachment janitor.
CREATE TABLE upload_usage (
    subject TEXT   NOT NULL,
    day     TEXT   NOT NULL,                            -- YYYY-MM-DD, UTC
    bytes   BIGINT NOT NULL,
    PRIMARY KEY (subject, day)
);
