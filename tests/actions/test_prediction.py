"""`restore --dry-run` predicts each phase from the plan's past restores from the same store:
data phases scale with the bytes, the median of recent runs (end to end: in
test_backup_restore_files.py, after a restore)."""

from __future__ import annotations

from drkit.actions.prediction import predict_restore
from drkit.catalog import Catalog


def record_restore(catalog: Catalog, store: str, size: int, phases: dict[str, float]) -> None:
    run = catalog.start_run("plan", "restore")
    summary = {"bytes": size, "phases": phases, "items": [{"store": store}]}
    catalog.finish_run(run, "ok", summary=summary)


def test_data_phases_scale_with_the_bytes_and_each_phase_is_the_median(catalog: Catalog) -> None:
    for load in (10.0, 30.0, 20.0):
        record_restore(catalog, "east", 1000, {"locate": 1.0, "fetch": 2.0, "load": load})
    record_restore(catalog, "west", 1000, {"locate": 9.0, "fetch": 9.0, "load": 99.0})
    run = catalog.start_run("plan", "restore")
    catalog.finish_run(run, "failed", summary={"bytes": 1000, "phases": {"load": 500.0}})

    prediction = predict_restore(catalog, "plan", "east", 2000)

    assert prediction is not None and prediction.runs == 3
    assert prediction.phases == {"locate": 1.0, "fetch": 4.0, "load": 40.0}
    assert prediction.seconds == 45.0
    assert predict_restore(catalog, "plan", "north", 2000) is None
    assert predict_restore(catalog, "other-plan", None, 2000) is None
