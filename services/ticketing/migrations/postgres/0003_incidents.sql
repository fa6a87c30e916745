-- Escalations of a ticket: situation-center incidents (seed 000) and federal supervisor checks
-- (seed 001). The fields are the situation center's request form.
CREATE TABLE incidents (
    id              TEXT   PRIMARY KEY,
    ticket_id       TEXT   NOT NULL REFERENCES tickets (id),
    appeal_id       TEXT   NOT NULL,
    organization_id TEXT   NOT NULL,
    kind            TEXT   NOT NULL,   -- situation_center, federal_supervisor
    state           TEXT   NOT NULL,
    service         TEXT   NOT NULL,   -- e.g. "Инциденты ИС ИЭП"
    request_type    TEXT   NOT NULL,   -- e.g. "Запрос/инцидент"
    system          TEXT   NOT NULL,   -- e.g. "МШ. Платформа ЦОК"
    priority        TEXT   NOT NULL,   -- e.g. "3 Приоритет"
    subject         TEXT   NOT NULL,
    attachment_ids  TEXT   NOT NULL,   -- space-separated
    user_account    TEXT   NOT NULL,   -- the applicant's account (SNILS or e-mail): personal data, never logged
    external_id     TEXT   NOT NULL,   -- the ITSM's or the supervisor's reference
    resolution      TEXT   NOT NULL,
    last_comment    TEXT   NOT NULL,
    opened_by       TEXT   NOT NULL,
    opened_at       BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX incidents_ticket ON incidents (ticket_id, opened_at);
CREATE INDEX incidents_organization ON incidents (organization_id, state);
