"""The files source's capture, this checkout against another one (``--baseline PATH``, a
checkout or worktree of an earlier drkit), on one generated tree of small config files, in
interleaved rounds alternating which goes first. Each capture runs in its own Python process;
wall clock and the process's CPU time (all threads) are reported, medians and ranges.

    python -m bench.files_walk --baseline /work/main --folders 200 --files 100 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CAPTURE = """
import sys, time
from drkit.plan.schema import FilesSource
from drkit.sources.files import FileTree
source = FileTree(FilesSource(name="tree", type="files", paths=[sys.argv[1]]))
started, cpu = time.perf_counter(), time.process_time()
with source.snapshot() as captured:
    size = sum(len(chunk) for chunk in captured.chunks)
print(time.perf_counter() - started, time.process_time() - cpu, size)
"""


def make_tree(root: Path, folders: int, files: int) -> None:
    for folder in range(folders):
        (root / f"conf{folder}.d").mkdir(parents=True)
        for number in range(files):
            (root / f"conf{folder}.d" / f"{number}.conf").write_text("x" * (200 + number))


def capture(checkout: Path, tree: Path) -> tuple[float, float]:
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    completed = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(tree)],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    )
    wall, cpu, _ = completed.stdout.split()
    return float(wall), float(cpu)


def describe(figures: list[float]) -> str:
    return f"{statistics.median(figures):.2f} s ({min(figures):.2f}-{max(figures):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    workspace = Path(tempfile.mkdtemp(prefix="drkit-bench-"))
    try:
        make_tree(workspace / "tree", arguments.folders, arguments.files)
        results: dict[str, list[tuple[float, float]]] = {"baseline": [], "this": []}
        checkouts = {"baseline": arguments.baseline, "this": here}
        for round_number in range(arguments.rounds):
            order = ["this", "baseline"] if round_number % 2 == 0 else ["baseline", "this"]
            for name in order:
                results[name].append(capture(checkouts[name], workspace / "tree"))
        count = arguments.folders * arguments.files
        print(f"{count} files in {arguments.folders} folders, {arguments.rounds} rounds")
        for name, figures in results.items():
            walls, cpus = [f[0] for f in figures], [f[1] for f in figures]
            print(f"{name}: wall {describe(walls)}, CPU {describe(cpus)}")
        ratio = statistics.median(f[1] for f in results["this"]) / statistics.median(
            f[1] for f in results["baseline"]
        )
        print(f"CPU this / baseline: {ratio:.2f}x")
    finally:
        shutil.rmtree(workspace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
