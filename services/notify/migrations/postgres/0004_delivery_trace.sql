-- The W3C traceparent of the context that planned each e-mail (the handling of its event), so
-- that sending it later, outside that handler, continues the appeal's trace. Empty: no trace
-- (a digest gathers many events; rows planned before this column).
ALTER TABLE deliveries ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
