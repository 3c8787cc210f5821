"""The simulator: runs journeys on synthetic contacts in skipped time and reports what they did."""

from pathlib import Path

SIMULATIONS = "simulations"  # inside the data dir: one folder per simulation or backtest


def simulation_folder(data_dir: Path, simulation_id: str) -> Path:
    """Where a simulation's store is kept, for `journeys explain --simulation`."""
    return data_dir / SIMULATIONS / simulation_id
