-- Rate limits shared by every gateway replica: one GCRA (generic cell rate algorithm) state per
-- (scope, key), e.g. ('session', '<uuid>') or ('address', '203.0.113.7').
-- UNLOGGED: limits are short-lived state; losing them in a crash only forgives a minute of calls,
-- and skipping the WAL keeps the one write every limited call makes cheap.
CREATE UNLOGGED TABLE rate_limits (
    scope             text        NOT NULL,
    key               text        NOT NULL,
    -- The theoretical arrival time: when the key's allowance is whole again. A row whose tat
    -- has passed says nothing that a missing row does not, so the sweep deletes it.
    tat               timestamptz NOT NULL,
    -- The outcome of the latest check, so that the check reads it back with RETURNING.
    allowed           boolean     NOT NULL,
    -- The limit of the latest check (period / calls, and (burst - 1) * that).
    emission_interval interval    NOT NULL,
    tolerance         interval    NOT NULL,
    PRIMARY KEY (scope, key)
);
