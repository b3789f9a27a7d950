"""The public API: gRPC and gRPC-Web, sessions, validation, live job streams."""
