"""The running processes: the worker, the event router, the embedded Temporal dev
server, and the entry points that start them (`journeys dev|worker|router|api`)."""
