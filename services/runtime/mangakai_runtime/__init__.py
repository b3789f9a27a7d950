"""The small runtime library every service shares: settings, logging, telemetry, gRPC bootstrap, errors."""
