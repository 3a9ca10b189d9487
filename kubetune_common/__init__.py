"""What every part of kubetune shares, the services, the gateway, the UI and the CLI
alike: settings and ports (config), the error hierarchy and its status codes (errors),
gRPC channels and health checks (channels), NATS subject names (subjects), JSON logging
(logs), the metrics' and prediction tables' conventions (quality, prediction_input),
SQLite's WAL mode (sqlite). It imports no service, so the UI and the CLI need nothing
from services/ (tests/architecture/test_arrows.py holds them to it); what only the services
share (the server bootstrap, the event bus, the outbox, the backend clients) stays in
services/common/."""
