-- The orchestrator's job store: jobs, their panels and panel versions, the
-- job event log (the outbox relayed to JetStream) and cached exports.
-- Protobuf-typed values (style, plan, scene, event) are stored serialized.

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    session_id       uuid        NOT NULL,
    request_id       text,
    state            smallint    NOT NULL,
    story            text        NOT NULL,
    panel_count      integer     NOT NULL CHECK (panel_count BETWEEN 1 AND 24),
    style            bytea       NOT NULL,
    layout           smallint    NOT NULL,
    reading_order    smallint    NOT NULL,
    title            text        NOT NULL DEFAULT '',
    plan             bytea,
    failure_reason   text        NOT NULL DEFAULT '',
    cancel_requested boolean     NOT NULL DEFAULT false,
    run              integer     NOT NULL DEFAULT 1,
    last_event_seq   bigint      NOT NULL DEFAULT 0,
    published_seq    bigint      NOT NULL DEFAULT 0,
    owner            text,
    lease_expires_at timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    end_time         timestamptz,
    UNIQUE (session_id, request_id)
);

CREATE INDEX jobs_by_session ON jobs (session_id, create_time DESC, id DESC);
-- Jobs whose events are not all relayed yet.
CREATE INDEX jobs_unpublished ON jobs (update_time) WHERE published_seq < last_event_seq;
-- Jobs still running (for the stale-job sweep).
CREATE INDEX jobs_active ON jobs (update_time) WHERE state IN (1, 2, 3);

CREATE TABLE panels (
    job_id          uuid    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number          integer NOT NULL,
    scene           bytea   NOT NULL,
    current_version integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, number)
);

CREATE TABLE panel_versions (
    job_id             uuid        NOT NULL,
    number             integer     NOT NULL,
    version            integer     NOT NULL,
    state              smallint    NOT NULL,
    image              bytea,
    instruction        text        NOT NULL DEFAULT '',
    reference_blob_key text        NOT NULL DEFAULT '',
    failure_reason     text        NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL DEFAULT now(),
    end_time           timestamptz,
    PRIMARY KEY (job_id, number, version),
    FOREIGN KEY (job_id, number) REFERENCES panels (job_id, number) ON DELETE CASCADE
);

CREATE TABLE job_events (
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL,
    event       bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_exports (
    job_id      uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    format      smallint    NOT NULL,
    fingerprint text        NOT NULL,
    blob        bytea       NOT NULL,
    page_count  integer     NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, format, fingerprint)
);
