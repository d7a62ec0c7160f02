"""The HTML compliance report opens in a real browser (Debian's headless Chromium) and shows
the recorded figures: plan, RTO/RPO charts with their objective lines, evidence."""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from drkit.cli import main

from ..conftest import require

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(found is not None, "chromium is not installed (apt-get install chromium)")
    assert found is not None
    return found


def png_colours(png: bytes) -> int:
    """How many distinct byte values the decompressed image data holds (blank page ~ 2)."""
    assert png.startswith(b"\x89PNG")
    data, position = b"", 8
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(data)))


def test_html_report_renders_with_figures_and_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = chromium()
    demo = tmp_path / "demo"
    monkeypatch.setenv("DRKIT_DEMO_DIR", str(demo))
    monkeypatch.setenv("DRKIT_CATALOG", f"sqlite:///{demo / 'catalog.db'}")  # the demo's runs
    assert main(["demo"]) == 0
    capsys.readouterr()
    report = tmp_path / "report.html"
    assert (
        main(
            [
                "--catalog",
                f"sqlite:///{demo / 'catalog.db'}",
                "report",
                str(demo / "plan.yaml"),
                "--since",
                "1d",
                "--format",
                "html",
                "-o",
                str(report),
            ]
        )
        == 0
    )
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Plan demo-api" in dom
    assert len(re.findall(r"<svg[^>]*role=\"img\"", dom)) == 2
    # a healthy demo is far below its objectives: the charts say so instead of a flat line
    assert "objective 5m00s (far above every value)" in dom and "objective 1h00m" in dom
    assert re.search(r"Drills run / passed</th><td[^>]*>1 / 1<", dom)
    assert re.search(
        r"Backups due / taken / succeeded / failed / interrupted</th><td[^>]*>\d+ / 1 / 1 / 0 / 0 ",
        dom,
    )
    snapshot_id = re.search(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}", dom)
    assert snapshot_id is not None
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1000,1400",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert png_colours(shot.read_bytes()) > 16  # text, bars and lines, not a blank page
