"""The job state machine: the job store, JetStream work and events, panel scheduling."""
