-- Reroutes a cabinet asked for (ticket.reroute_requested): each is a new decision for an appeal
-- whose first decision stays in routing_decisions. Keyed by the ticket that asked, so a
-- redelivered request decides nothing twice; a ticket ends when it asks, so it asks once.
CREATE TABLE routing_reroutes (
    ticket_id            TEXT   PRIMARY KEY,
    appeal_id            TEXT   NOT NULL,
    from_organization_id TEXT   NOT NULL,
    requested_to         TEXT   NOT NULL,   -- empty: return to coordination
    organization_id      TEXT   NOT NULL,   -- where it went
    explanation          TEXT   NOT NULL,
    decided_at           BIGINT NOT NULL
);
CREATE INDEX routing_reroutes_appeal ON routing_reroutes (appeal_id, decided_at);
