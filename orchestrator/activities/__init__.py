"""Everything a journey asks the world to do: run records, contacts, sends.

`orchestrator.processes.worker.build_worker` binds them to one engine and channel set.

Every activity is synchronous, runs in a worker thread and is defined with
`no_thread_cancel_exception=True`: by default the Temporal SDK cancels such an
activity (worker shutdown, heartbeat timeout) by raising an exception inside its
thread at whatever line it is on, which tears a database transaction in half (a
PostgreSQL connection left `ACTIVE`, "can't change 'autocommit' now") or lands
between a provider's answer and the row that records it. Our activities are
short and bounded by the database's and the adapters' own timeouts, so they
always run to the end and record what happened; the worker waits for them when
it stops (`JOURNEYS_SHUTDOWN_GRACE`, docs/operations.md).
"""
