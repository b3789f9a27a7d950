"""Starts the local stack (PostgreSQL, nats-server, the four services) for make run and the tests."""
