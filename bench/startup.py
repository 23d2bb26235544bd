"""Start-up time of ``wetoop-bot serve`` to a ready ``/healthz`` (200).

Cold: a new, empty DATA_DIR each run (the embedded nx-27017 and Valkey start,
the database and indexes are created, the seed agreement is stored, the Q&A
index is built: ``/healthz`` answers 503 ``starting`` until then). Warm: the
same DATA_DIR again after a clean stop (files exist; the servers still start,
since they stop with the service). The clock runs from spawning the process
to the first 200 from ``/healthz``, polled every 20 ms.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Service, emit, machine_lines, median, table  # noqa: E402


def once(data_dir: Path) -> float:
    service = Service(data_dir=data_dir, keep=True)
    try:
        return service.start(timeout=120)
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Start-up time of wetoop-bot serve (see docstring).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", help="also write the Markdown report to this file")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 20))

    root = Path(tempfile.mkdtemp(prefix="wetoop-startup-"))
    cold, warm = [], []
    try:
        for i in range(runs):
            data_dir = root / f"cold-{i}"
            cold.append(once(data_dir))
            print(f"  cold {i + 1}: {cold[-1]:.2f} s", file=sys.stderr, flush=True)
        warm_dir = root / "cold-0"
        for i in range(runs):
            warm.append(once(warm_dir))
            print(f"  warm {i + 1}: {warm[-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def row(name, values):
        return [name, len(values), f"{median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}"]

    text = "\n".join(
        [
            "## Start-up time (bench/startup.py)",
            "",
            *machine_lines(),
            "- `wetoop-bot serve`, one process, embedded default; from spawn to the first `/healthz` 200",
            "",
            table(["DATA_DIR", "runs", "median s", "min s", "max s"], [row("cold (new)", cold), row("warm (existing)", warm)]),
        ]
    )
    emit(text, args.output)


if __name__ == "__main__":
    main()
