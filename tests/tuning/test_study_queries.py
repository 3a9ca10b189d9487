"""What the UI asks about a finished study, through the gateway: its summary (history,
importances, parallel coordinates) and its runs, sorted and paged."""

from __future__ import annotations

import pytest

from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from testing.studies import run_study, small_spec, wait_for_mlflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(gateway):
    done = run_study(gateway, small_spec(trials=6, epochs=3, parallel=2, pruner=pb.PRUNER_NONE, name="summary-study"))
    wait_for_mlflow(gateway, done)  # the runs' final metrics are written just after
    return done


def test_study_summary(gateway, study):
    summary = gateway.StudySummary(pb.StudySummaryRequest(study_id=study.id))
    trials = {t.number: t for t in gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials}
    assert [h.trial for h in summary.history] == sorted(trials)
    for point in summary.history:
        assert point.value == pytest.approx(trials[point.trial].values[0])
    best = [h.best_so_far for h in summary.history]
    assert best == sorted(best, reverse=True) and best[-1] == pytest.approx(study.best_values[0])
    assert summary.counts_by_state["COMPLETE"] == 6
    assert {i.param for i in summary.importances} == {"learning_rate", "n_layers", "units", "batch_size"}
    assert sum(i.importance for i in summary.importances) == pytest.approx(1.0, abs=1e-6)
    assert len(summary.parallel_coordinates) == 6
    again = gateway.StudySummary(pb.StudySummaryRequest(study_id=study.id))
    assert again.revision == summary.revision  # cached until the study changes


def test_runs_sorted_and_paged(gateway, study):
    request = tracking_pb2.ListRunsRequest(study_id=study.id, trials_only=True, sort_kind=tracking_pb2.FIELD_KIND_METRIC,
                                           sort_key="val_loss", page_size=4, columns=["metric:val_loss"])
    first = gateway.ListRuns(request)
    assert len(first.runs) == 4 and first.next_page_token and first.total == 6
    request.page_token = first.next_page_token
    second = gateway.ListRuns(request)
    assert len(second.runs) == 2 and not second.next_page_token
    values = [r.metrics["val_loss"] for r in [*first.runs, *second.runs]]
    assert values == sorted(values)
    assert values[0] == pytest.approx(study.best_values[0])
    histories = gateway.GetMetricHistories(tracking_pb2.GetMetricHistoriesRequest(
        run_ids=[r.run_id for r in first.runs], keys=["val_loss", "train_loss"], max_points=2))
    assert len(histories.histories) == 8
    assert all(h.total_points == 3 and len(h.points) <= 3 for h in histories.histories)
