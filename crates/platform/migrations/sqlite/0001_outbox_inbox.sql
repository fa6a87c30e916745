-- Events waiting to be published, written in the same transaction as the change that caused them.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,
    routing_key TEXT    NOT NULL,
    type_name   TEXT    NOT NULL,
    headers     TEXT    NOT NULL,            -- JSON object of string headers (traceparent, appeal id)
    payload     BLOB    NOT NULL,            -- protobuf
    created_at  BIGINT  NOT NULL,            -- microseconds since the Unix epoch, UTC
    sent_at     BIGINT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Events already handled, per consumer: a redelivery finds its row and changes nothing.
CREATE TABLE inbox (
    consumer     TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
