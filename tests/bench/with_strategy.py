"""Run a command with the bench's Ansible connection strategy (how make demo runs ironserve run).

python tests/bench/with_strategy.py mitogen|linear COMMAND [ARG...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_scenarios import strategy_env

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("mitogen", "linear"):
        sys.exit(__doc__.strip())
    # the command is the Makefile's own recipe, run as itself (no shell)
    os.execvpe(sys.argv[2], sys.argv[2:], {**os.environ, **strategy_env(sys.argv[1])})  # noqa: S606
