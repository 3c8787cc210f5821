"""The data directory's lock: what it tells the commands run beside `journeys dev`."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.processes.data_lock import DataDirInUse, DataDirLock, running_dev_temporal


def test_commands_beside_journeys_dev_find_its_temporal_port_while_it_runs(
    tmp_path: Path,
) -> None:
    """`journeys dev --temporal-port 17233`, then `journeys campaigns pause X` on the same
    data directory: the command reaches 17233, not the default 7233."""
    assert running_dev_temporal(tmp_path) is None  # no lock file
    lock = DataDirLock(tmp_path).acquire(temporal="127.0.0.1:17233")
    try:
        assert running_dev_temporal(tmp_path) == "127.0.0.1:17233"
        with pytest.raises(DataDirInUse, match=r"in use by another `journeys dev` \(pid \d+\)"):
            DataDirLock(tmp_path).acquire()  # the pid is still named
    finally:
        lock.release()
    assert running_dev_temporal(tmp_path) is None  # stopped: the file stays, the lock is free
    again = DataDirLock(tmp_path).acquire()  # against an external Temporal: no address noted
    try:
        assert running_dev_temporal(tmp_path) is None
    finally:
        again.release()


def test_the_cli_takes_the_running_dev_port_unless_temporal_address_is_set(
    tmp_path: Path,
) -> None:
    from orchestrator.cli.main import _beside_dev
    from orchestrator.settings import Settings

    settings = Settings(data_dir=tmp_path, temporal_address=None)
    assert _beside_dev(settings).temporal_port == 7233  # nothing runs there
    lock = DataDirLock(tmp_path).acquire(temporal="127.0.0.1:17233")
    try:
        assert _beside_dev(settings).temporal_port == 17233
        external = settings.model_copy(update={"temporal_address": "temporal.internal:7233"})
        assert _beside_dev(external) is external
    finally:
        lock.release()
