-- Indexes for a cabinet of 100,000 tickets: its text search, its number search, and the reports.
--
-- The text filter matches a substring of `search_text` (LIKE '%…%'), which no B-tree finds: a
-- search for a rare word, or one no ticket holds, read every ticket of the folder (hundreds of
-- milliseconds to seconds in a cabinet of 100,000). A trigram index finds the tickets that hold every three-letter piece of the
-- words, so such a search costs a few index pages; a common word is still served down the
-- list's own order, which stops once the page is full (the planner picks, per search, from the
-- words: see `listing::page`). pg_trgm ships with PostgreSQL and is trusted since 13, so the
-- database's owner may create it; it lives in `public`, once per database, for every schema.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX tickets_search_text ON tickets USING gin (search_text public.gin_trgm_ops);
-- An appeal's number, found exactly by the same filter.
CREATE INDEX tickets_number ON tickets (organization_id, number);
-- A ticket's approvals (the history lines into `answered`): a report's first and last answer of
-- each ticket, one probe each.
CREATE INDEX ticket_history_answers ON ticket_history (ticket_id, at) WHERE to_stage = 'answered';
