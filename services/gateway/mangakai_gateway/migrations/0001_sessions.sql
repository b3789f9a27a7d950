-- The gateway's sessions: an anonymous owner of jobs, known by the sha256 of its bearer token.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    token_sha256 bytea       NOT NULL UNIQUE,
    client       text        NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL DEFAULT now()
);
