-- The audit trail of security events about this service's methods (see `pos_platform::audit`):
-- denials, sign-ins, and changes of staff, policies, calendars, the classifier and the directory.
-- Append-only: nothing in the code updates or deletes a row, and the triggers below refuse it.
-- No personal data: subjects, organization ids, method names, reason codes and object ids.
CREATE TABLE audit_events (
    id                    TEXT   PRIMARY KEY,   -- UUID v7
    at                    BIGINT NOT NULL,      -- microseconds since the Unix epoch, UTC
    kind                  TEXT   NOT NULL,      -- denied_permission, staff_changed, ...
    actor_subject         TEXT   NOT NULL,      -- empty when the caller had no valid token
    actor_organization_id TEXT   NOT NULL,
    actor_roles           TEXT   NOT NULL,      -- space-separated role names
    method                TEXT   NOT NULL,      -- `pos.v1.SlaService/PutPolicy`, or `web/sign-in`
    organization_id       TEXT   NOT NULL,      -- the organization the event is about
    object_id             TEXT   NOT NULL,
    outcome               TEXT   NOT NULL,      -- `ok`, or the refusal's reason code
    details               TEXT   NOT NULL       -- JSON object
);
CREATE INDEX audit_events_newest ON audit_events (at, id);
CREATE INDEX audit_events_organization ON audit_events (organization_id, at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
