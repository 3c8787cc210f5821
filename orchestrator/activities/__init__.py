"""Everything a journey asks the world to do: run records, contacts, sends.

`orchestrator.worker.build_worker` binds them to one engine and channel set.
"""
