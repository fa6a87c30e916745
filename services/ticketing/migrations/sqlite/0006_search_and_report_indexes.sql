-- Indexes for a cabinet of 100,000 tickets: its text search, its number search, and the reports.
--
-- The text filter matches a substring of `search_text` (LIKE '%…%'), which no B-tree finds: a
-- search for a rare word, or one no ticket holds, read every ticket of the folder (hundreds of
-- milliseconds in a cabinet of 100,000). PostgreSQL gets a trigram index; SQLite's substring index is an FTS5 table with
-- the trigram tokenizer, kept beside `tickets` by the triggers below. It holds each ticket's id
-- and its search copy (`detail = 'none'`: which tickets hold a trigram, not where, a fifth of
-- the size; LIKE then checks each candidate's text). It keys on the ticket's id rather than
-- its rowid, which VACUUM may renumber. It is SQLite's stand-in for PostgreSQL's index, not a
-- table of the shared schema: named `_pos_…` as the platform's own bookkeeping is, which the
-- schema parity check leaves out (with its shadow tables). `listing::page` decides per search
-- whether to come in through it (few matches) or down the list's order (many).
CREATE VIRTUAL TABLE _pos_ticket_search USING fts5(
    ticket_id UNINDEXED,
    search_text,
    tokenize = 'trigram',
    detail = 'none'
);
INSERT INTO _pos_ticket_search (ticket_id, search_text) SELECT id, search_text FROM tickets;
CREATE TRIGGER _pos_ticket_search_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO _pos_ticket_search (ticket_id, search_text) VALUES (new.id, new.search_text);
END;
-- The service writes a ticket's search copy once, with the ticket; these keep the index right
-- should anything else change or remove it.
CREATE TRIGGER _pos_ticket_search_update AFTER UPDATE OF id, search_text ON tickets BEGIN
    DELETE FROM _pos_ticket_search WHERE ticket_id = old.id;
    INSERT INTO _pos_ticket_search (ticket_id, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER _pos_ticket_search_delete AFTER DELETE ON tickets BEGIN
    DELETE FROM _pos_ticket_search WHERE ticket_id = old.id;
END;

-- An appeal's number, found exactly by the same filter.
CREATE INDEX tickets_number ON tickets (organization_id, number);
-- A ticket's approvals (the history lines into `answered`): a report's first and last answer of
-- each ticket, one probe each.
CREATE INDEX ticket_history_answers ON ticket_history (ticket_id, at) WHERE to_stage = 'answered';
