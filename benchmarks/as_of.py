"""Run a benchmark script against another checkout's product code: before/after figures.

    git worktree add ../before <commit>
    python benchmarks/as_of.py ../before benchmarks/ingest_throughput.py --batch 0

The script is this checkout's (the same measurement); `orchestrator` and `channels`
are imported from the other tree, put first on the import path (an editable install
of this checkout is only found after it). The script's own child processes (load
generators) import this checkout's, which they do not use.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    tree, script = Path(sys.argv[1]).resolve(), sys.argv[2]
    if not (tree / "orchestrator").is_dir():
        sys.exit(f"{tree} has no orchestrator/ package: give the other checkout's root")
    sys.path.insert(0, str(tree))
    sys.argv = sys.argv[2:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
