"""Everything a journey asks the world to do: run records, contacts, sends.

`orchestrator.processes.worker.build_worker` binds them to one engine and channel set.
"""
