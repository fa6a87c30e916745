-- Events that reached a consumer before the object they are about (a deadline before its ticket),
-- kept per consumer and object until the transaction that creates the object takes them back.
-- Rows that stay here are events still waiting for their object; see `pos_platform::parking`.
CREATE TABLE parked (
    id           INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order
    consumer     TEXT    NOT NULL,
    object_key   TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    routing_key  TEXT    NOT NULL,
    type_name    TEXT    NOT NULL,
    headers      TEXT    NOT NULL,                -- JSON object of string headers, as in the outbox
    payload      BLOB    NOT NULL,                -- protobuf
    published_at BIGINT  NOT NULL,                -- the envelope's timestamp, microseconds since the Unix epoch, UTC
    parked_at    BIGINT  NOT NULL,
    UNIQUE (consumer, message_id)
);
CREATE INDEX parked_object ON parked (consumer, object_key, id);
CREATE INDEX parked_parked_at ON parked (parked_at);
