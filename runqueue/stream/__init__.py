"""The run stream: one interface, one module per transport (Redis Streams, SQL)."""
