-- What people read: the classifier's names (never only the ids) and the zone of the applicant's
-- region, as appeal.received and appeal.routed carry them.
ALTER TABLE appeals ADD COLUMN category_name TEXT NOT NULL DEFAULT '';
ALTER TABLE appeals ADD COLUMN subcategory_name TEXT NOT NULL DEFAULT '';
ALTER TABLE appeals ADD COLUMN fact_name TEXT NOT NULL DEFAULT '';
ALTER TABLE appeals ADD COLUMN applicant_time_zone TEXT NOT NULL DEFAULT '';
-- The own time of the latest thing a letter told the applicant (a status's time, not when its
-- event arrived): a status older than that arriving late is not told after it.
ALTER TABLE appeals ADD COLUMN last_letter_at BIGINT NOT NULL DEFAULT 0;
-- The own time of what a row tells: one applicant's letters about one appeal go out in this order.
ALTER TABLE deliveries ADD COLUMN event_at BIGINT NOT NULL DEFAULT 0;
