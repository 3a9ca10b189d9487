"""The Experiments page's run query and rows: filters, sort and page tokens for
ListRuns, and runs flattened for the table. No NiceGUI here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from kubetune.tracking.v1 import tracking_pb2 as tpb
from ui.formatting import RUN_STATUSES, number, when

KINDS = {"metric": tpb.FIELD_KIND_METRIC, "param": tpb.FIELD_KIND_PARAM, "tag": tpb.FIELD_KIND_TAG,
         "attribute": tpb.FIELD_KIND_ATTRIBUTE}
OPS = {"=": tpb.FILTER_OP_EQ, "≠": tpb.FILTER_OP_NE, "<": tpb.FILTER_OP_LT, "≤": tpb.FILTER_OP_LE,
       ">": tpb.FILTER_OP_GT, "≥": tpb.FILTER_OP_GE}
METRICS = ["val_loss", "train_loss", "val_accuracy", "duration_s", "n_params", "best_epoch"]
PARAMS = ["learning_rate", "dropout", "n_layers", "units", "batch_size", "optimizer", "activation",
          "weight_decay", "momentum", "max_epochs"]
# Table columns that sort on an attribute rather than a metric or param.
ATTRIBUTE_COLUMNS = {"name": "run_name", "status": "status", "started": "started_at"}


@dataclass(frozen=True)
class Filter:
    kind: str
    key: str
    op: str
    value: str

    def proto(self) -> tpb.RunFilter:
        return tpb.RunFilter(kind=KINDS[self.kind], key=self.key, op=OPS[self.op], value=self.value)

    def label(self) -> str:
        return f"{self.kind} {self.key} {self.op} {self.value}"


@dataclass
class RunQuery:
    experiment_ids: list[str] = field(default_factory=list)
    study_id: str = ""
    filters: list[Filter] = field(default_factory=list)
    since: date | None = None
    until: date | None = None  # inclusive day
    trials_only: bool = True
    sort_column: str = ""
    descending: bool = True
    page_size: int = 50

    def sort(self) -> tuple[int, str, bool]:
        if not self.sort_column:
            return tpb.FIELD_KIND_UNSPECIFIED, "", False
        if self.sort_column in ATTRIBUTE_COLUMNS:
            return tpb.FIELD_KIND_ATTRIBUTE, ATTRIBUTE_COLUMNS[self.sort_column], self.descending
        kind, _, key = self.sort_column.partition(":")
        return KINDS.get(kind, tpb.FIELD_KIND_UNSPECIFIED), key, self.descending

    def request(self, page_token: str = "", page_size: int | None = None, columns=()) -> tpb.ListRunsRequest:
        sort_kind, sort_key, descending = self.sort()
        r = tpb.ListRunsRequest(experiment_ids=self.experiment_ids, study_id=self.study_id,
                                filters=[f.proto() for f in self.filters], sort_kind=sort_kind, sort_key=sort_key,
                                descending=descending, page_size=page_size or self.page_size, page_token=page_token,
                                trials_only=self.trials_only, columns=list(columns))
        if self.since:
            r.since.CopyFrom(day_start(self.since))
        if self.until:
            r.until.CopyFrom(day_start(self.until + timedelta(days=1)))
        return r


def day_start(d: date) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.combine(d, time.min).astimezone())
    return ts


class Pager:
    """One ListRuns call per page, however far: page n skips (n - 1) page sizes (AIP-158's
    `skip`), so page 200 of 10,000 runs costs what page 1 does."""

    def __init__(self, query: RunQuery):
        self.query = query
        self.total = 0

    async def page(self, call, number: int) -> tpb.ListRunsResponse:
        request = self.query.request()
        request.skip = (max(1, number) - 1) * self.query.page_size
        response = await call(request)
        self.total = response.total
        return response


def run_label(run: tpb.Run, study_names: dict[str, str]) -> str:
    if run.study_id:
        return f"{study_names.get(run.study_id, run.study_id[:8])} #{run.trial}"
    return run.name or run.run_id[:8]


def run_row(run: tpb.Run, study_names: dict[str, str]) -> dict:
    row = {
        "run_id": run.run_id,
        "name": run.name or run.run_id[:8],
        "label": run_label(run, study_names),
        "study": study_names.get(run.study_id, run.study_id[:8]),
        "study_id": run.study_id,
        "trial": run.trial if run.study_id else "",
        "status": RUN_STATUSES.get(run.status, ""),
        "started": when(run.started_at),
        "dataset": f"{run.dataset.name}@{run.dataset.version}" if run.dataset.name else "",
        "has_model": bool(run.model_uri),
    }
    for k, v in run.metrics.items():
        row[f"metric:{k}"] = number(v, 5)
    for k, v in run.params.items():
        row[f"param:{k}"] = v
    return row


def columns_for(metric_keys: list[str], param_keys: list[str]) -> list[dict]:
    cols = [
        {"name": "name", "label": "Run", "field": "name", "align": "left", "sortable": True},
        {"name": "study", "label": "Study", "field": "study", "align": "left"},
        {"name": "trial", "label": "Trial", "field": "trial", "align": "right"},
        {"name": "status", "label": "Status", "field": "status", "align": "left", "sortable": True},
        {"name": "started", "label": "Started", "field": "started", "align": "left", "sortable": True},
    ]
    cols += [{"name": f"metric:{k}", "label": k, "field": f"metric:{k}", "align": "right", "sortable": True,
              "headerClasses": "text-primary"} for k in metric_keys]
    cols += [{"name": f"param:{k}", "label": k, "field": f"param:{k}", "align": "right", "sortable": True}
             for k in param_keys]
    return cols


def ordered_keys(seen: set[str], preferred: list[str]) -> list[str]:
    return [k for k in preferred if k in seen] + sorted(seen - set(preferred))


def compare_rows(response: tpb.CompareRunsResponse, labels: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Params and metrics side by side: one row per key, one column per run; differing params first."""
    run_ids = [r.run_id for r in response.runs]
    columns = [{"name": "key", "label": "", "field": "key", "align": "left"}]
    columns += [{"name": rid, "label": labels.get(rid, rid[:8]), "field": rid, "align": "right"} for rid in run_ids]
    rows = []
    for key in sorted(response.metrics):
        values = response.metrics[key].values
        rows.append({"key": key, "kind": "metric", **{rid: number(values[rid], 5) if rid in values else "–"
                                                      for rid in run_ids}})
    for key in sorted(response.differing_params):
        values = response.differing_params[key].values
        rows.append({"key": key, "kind": "differs", **{rid: values.get(rid, "–") for rid in run_ids}})
    for key in sorted(response.same_params):
        values = response.same_params[key].values
        rows.append({"key": key, "kind": "same", **{rid: values.get(rid, "–") for rid in run_ids}})
    return columns, rows
