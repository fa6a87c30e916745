-- Incidents seen from the ticket and from the body that handles them.
--
-- `incident_open` marks a ticket with an incident not yet confirmed by the applicant: the list
-- shows it and filters by it from the ticket's own row, with no join per row. Each incident step
-- keeps it in step, in the same transaction that bumps the ticket's version.
ALTER TABLE tickets ADD COLUMN incident_open BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tickets SET incident_open = TRUE
 WHERE EXISTS (SELECT 1 FROM incidents i WHERE i.ticket_id = tickets.id AND i.state <> 'confirmed');
-- Few tickets have an open incident: the filter reads only those.
CREATE INDEX tickets_incident_open ON tickets (organization_id, received_at) WHERE incident_open;

-- A federal supervisor's escalation is addressed to a body of the directory, whose staff list
-- and answer it; they cannot open the ticket, so the appeal's files named for them are kept here.
ALTER TABLE incidents ADD COLUMN handler_organization_id TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN handler_organization_name TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN appeal_attachment_ids TEXT NOT NULL DEFAULT '';  -- space-separated
CREATE INDEX incidents_handler ON incidents (handler_organization_id, opened_at) WHERE handler_organization_id <> '';

-- A history line names the files sent with its step (the applicant's information, an incident
-- step's), so that staff find them where they read what happened.
ALTER TABLE ticket_history ADD COLUMN attachment_ids TEXT NOT NULL DEFAULT '';  -- space-separated
