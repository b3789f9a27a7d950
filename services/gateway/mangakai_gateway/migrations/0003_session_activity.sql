-- Sessions expire after SESSION_IDLE_SECONDS without a call: the gateway records when each was
-- last used (at most once per touch interval per replica, not on every call) and sweeps the
-- expired ones, so the table holds the active sessions only, however many are minted.
ALTER TABLE sessions ADD COLUMN last_use_time timestamptz NOT NULL DEFAULT now();
CREATE INDEX sessions_last_use_time ON sessions (last_use_time);
