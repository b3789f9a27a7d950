-- Retention (see retention.py): when the partial blobs of a failed or cancelled
-- job were last deleted (set to the end time they were deleted for), and an
-- index for finding jobs that ended long ago.

ALTER TABLE jobs ADD COLUMN blobs_swept_at timestamptz;
CREATE INDEX jobs_ended ON jobs (update_time) WHERE state IN (4, 5, 6);
