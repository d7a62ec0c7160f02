"""``drkit report --since 90d`` of this checkout against another (``--baseline``, e.g. main),
over the same fleet history: each checkout fills its own SQLite catalog with identical hourly
history through its own catalog code (``bench.fleet.populate``, run as that checkout), then
the two reports run as child processes in interleaved rounds. Prints medians of wall and CPU
seconds and peak memory; figures go to bench/RESULTS.md by hand.

    python -m bench.report_baseline --baseline /work/main --plans 200 --days 20 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.fleet import ROOT, Command, measure, write_plans
from drkit.crypto import generate_keyfile

FILL = (
    "import sys; from datetime import datetime; from bench.fleet import populate; "
    "print(populate(sys.argv[1], int(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), "
    "datetime.fromisoformat(sys.argv[4]), serial=0))"
)


def fill(root: Path, url: str, plans: int, first: datetime, last: datetime) -> None:
    """The history, written by checkout ``root``'s own code (its catalog schema)."""
    environment = {**os.environ, "PYTHONPATH": str(root)}
    arguments = [url, str(plans), first.isoformat(), last.isoformat()]
    subprocess.run([sys.executable, "-c", FILL, *arguments], check=True, env=environment, cwd=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report_baseline", description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(days=options.days) + timedelta(hours=1)
    checkouts = {"this": ROOT, "baseline": options.baseline.resolve()}
    with tempfile.TemporaryDirectory(prefix="drkit-report-bench-") as folder:
        work = Path(folder)
        generate_keyfile(work / "bench.key")
        write_plans(work / "plans", options.plans, work / "bench.key")
        urls = {}
        for name, root in checkouts.items():
            urls[name] = f"sqlite:///{work / name}.db"
            fill(root, urls[name], options.plans, first, now)
            (work / f"home-{name}").mkdir()
        command = Command(
            "report", ("report", "--since", "90d", "--format", "json", str(work / "plans")), "r"
        )
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in checkouts}
        for _ in range(options.rounds):
            for name, root in checkouts.items():
                figures[name].append(measure(urls[name], command, work / f"home-{name}", root))
    for name, rows in figures.items():
        wall, cpu, peak = (statistics.median(values) for values in zip(*rows, strict=True))
        print(
            f"{name}: wall {wall:.2f} s ({min(r[0] for r in rows):.2f}-"
            f"{max(r[0] for r in rows):.2f}), CPU {cpu:.2f} s, peak {peak:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
