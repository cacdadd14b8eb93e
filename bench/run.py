"""`make bench`: every bench of the project, one after the other, on a quiet machine.

Each script prints its own figures (JSON) and writes them to bench/results/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["collector.py", "pipeline.py", "loader.py", "kafka.py", "enrich.py", "analytics.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        path = HERE / script
        if not path.exists():
            continue
        print(f"== bench/{script}", flush=True)
        if subprocess.run([sys.executable, str(path)], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
