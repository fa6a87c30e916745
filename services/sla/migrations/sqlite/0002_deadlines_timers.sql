-- Deadlines with pauses, rounds and an executor's stage; the append-only SLA log; durable
-- timers and the ledger that makes each fire at most once; policies and calendars as data.

-- One row per (appeal, clock): the answer clock (round 1, 2 after a re-review, ...) and the
-- executor's stage clock. `generation` changes whenever the deadline moves, pauses or stops:
-- timers of an older generation are stale and fire as no-ops.
CREATE TABLE sla_clocks (
    appeal_id         TEXT    NOT NULL,
    clock             TEXT    NOT NULL,       -- answer | execution
    ticket_id         TEXT    NOT NULL DEFAULT '',
    organization_id   TEXT    NOT NULL,
    region_code       TEXT    NOT NULL,
    time_zone         TEXT    NOT NULL,
    fact_id           TEXT    NOT NULL DEFAULT '',
    assignee_id       TEXT    NOT NULL DEFAULT '',
    round             INTEGER NOT NULL,
    fast_track        INTEGER NOT NULL,
    period_days       INTEGER NOT NULL,
    working_days      INTEGER NOT NULL,
    started_at        BIGINT  NOT NULL,       -- microseconds since the Unix epoch, UTC
    due_at            BIGINT  NOT NULL,
    span_micros       BIGINT  NOT NULL,       -- due_at - started_at when armed (share warnings)
    state             TEXT    NOT NULL,       -- running | paused | stopped
    paused_at         BIGINT,
    overdue           INTEGER NOT NULL DEFAULT 0,
    met               INTEGER NOT NULL DEFAULT 0,
    stopped_at        BIGINT,
    generation        INTEGER NOT NULL,
    warnings          TEXT    NOT NULL DEFAULT '[]',   -- JSON: the policy's warning points when armed
    updated_at        BIGINT  NOT NULL,
    PRIMARY KEY (appeal_id, clock)
);
CREATE INDEX sla_clocks_open ON sla_clocks (organization_id, due_at) WHERE state <> 'stopped';

-- Every change of a clock, in order; never updated or deleted.
CREATE TABLE sla_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    appeal_id   TEXT    NOT NULL,
    clock       TEXT    NOT NULL,
    round       INTEGER NOT NULL,
    kind        TEXT    NOT NULL,             -- armed | paused | resumed | moved | kept | warned | breached | met | stopped
    at          BIGINT  NOT NULL,
    due_at      BIGINT,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sla_log_appeal ON sla_log (appeal_id, id);

-- Durable timers, written in the transaction that armed or moved the clock.
CREATE TABLE timers (
    id          TEXT    PRIMARY KEY,          -- appeal:clock:round:generation:kind:point
    appeal_id   TEXT    NOT NULL,
    clock       TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    kind        TEXT    NOT NULL,             -- warning | overdue
    point       TEXT    NOT NULL DEFAULT '',
    due_at      BIGINT  NOT NULL,
    fired_at    BIGINT,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX timers_pending ON timers (due_at) WHERE fired_at IS NULL;

-- At most once: a timer fires only by inserting its ledger row.
CREATE TABLE timer_ledger (
    timer_id        TEXT    PRIMARY KEY,
    outcome         TEXT    NOT NULL,         -- published | stale
    due_at          BIGINT  NOT NULL,
    fired_at        BIGINT  NOT NULL,
    lateness_micros BIGINT  NOT NULL
);

CREATE TABLE policies (
    region_code TEXT   PRIMARY KEY,           -- '*' for the default
    body        TEXT   NOT NULL,              -- JSON of policy::Policy
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT   NOT NULL
);

CREATE TABLE calendar_years (
    region_code TEXT    NOT NULL,             -- '*' for the federal calendar
    year        INTEGER NOT NULL,
    body        TEXT    NOT NULL,             -- JSON of calendar::CalendarYear
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (region_code, year)
);

-- The first part's clocks carry over as running answer clocks of round 1; working-day clocks
-- without a due time are re-armed by nothing, so they are kept in the log for an operator.
INSERT INTO sla_clocks (appeal_id, clock, organization_id, region_code, time_zone, round, fast_track, period_days,
                        working_days, started_at, due_at, span_micros, state, generation, updated_at)
SELECT appeal_id, 'answer', organization_id, region_code, time_zone, 1, fast_track, period_days, working_days,
       registered_at, due_at, due_at - registered_at, 'running', 1, armed_at
FROM clocks WHERE due_at IS NOT NULL;
INSERT INTO sla_log (appeal_id, clock, round, kind, at, due_at, detail)
SELECT appeal_id, 'answer', 1, 'armed', armed_at, due_at, 'carried over from the first SLA schema'
FROM clocks WHERE due_at IS NOT NULL;
INSERT INTO sla_log (appeal_id, clock, round, kind, at, due_at, detail)
SELECT appeal_id, 'answer', 1, 'stopped', armed_at, NULL, 'working-day clock of the first SLA schema never counted: re-arm by hand'
FROM clocks WHERE due_at IS NULL;
DROP TABLE clocks;
