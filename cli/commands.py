"""`kubetune data|study|runs|model ...`: the gateway's API for scripts and terminals.

Every command talks to the gateway only (`--gateway`, KUBETUNE_GATEWAY; a token from
KUBETUNE_TOKEN), prints a table or, with --json, JSON; an error is one line on
stderr and a non-zero exit."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

import hyperparams
from cli.flags import bounded, count, in_flag_terms, seconds, zero_or_more
from cli.ranges import describe, parse_param
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common import quality
from kubetune_common.config import PORTS
from kubetune_common.errors import KubetuneError
from kubetune_common.prediction_input import BadTable, Column, Table, check_table, columns_of, read_table

UPLOAD_CHUNK = 1 << 20
PARAM_FLAGS = {
    "lr": "learning_rate", "dropout": "dropout", "layers": "n_layers", "units": "units",
    "batch_size": "batch_size", "optimizer": "optimizer", "activation": "activation",
    "weight_decay": "weight_decay", "momentum": "momentum", "precision": "precision",
}
SAMPLERS = {"tpe": pb.SAMPLER_TPE, "random": pb.SAMPLER_RANDOM, "cmaes": pb.SAMPLER_CMAES, "qmc": pb.SAMPLER_QMC,
            "nsga2": pb.SAMPLER_NSGA2, "grid": pb.SAMPLER_GRID}
PRUNERS = {"median": pb.PRUNER_MEDIAN, "hyperband": pb.PRUNER_HYPERBAND,
           "successive-halving": pb.PRUNER_SUCCESSIVE_HALVING, "none": pb.PRUNER_NONE}
MISSING = {"impute": data_pb2.MISSING_POLICY_IMPUTE, "drop": data_pb2.MISSING_POLICY_DROP_ROWS,
           "refuse": data_pb2.MISSING_POLICY_REFUSE}
STUDY_STATES = {pb.STUDY_STATE_RUNNING: "running", pb.STUDY_STATE_STOPPED: "stopped", pb.STUDY_STATE_COMPLETED: "completed"}
TRIAL_STATES = {v: k.removeprefix("TRIAL_STATE_").lower() for k, v in pb.TrialState.items()}


class Client:
    def __init__(self, address: str, token: str):
        self.channel = grpc.insecure_channel(address)
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __call__(self, method: str, request, timeout: float = 60):
        return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)

    def stream(self, method: str, request):
        return getattr(self.stub, method)(request, metadata=self.metadata)


def as_dict(message) -> dict:
    # Every field, zeros included: trial 0 has a "number", a script need not guess defaults.
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def emit(args, message, table=None) -> int:
    if args.json:
        print(json.dumps(as_dict(message), indent=2))
    elif table:
        table()
    return 0


def print_table(headers: list[str], rows: list[list]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def fmt(x: float) -> str:
    return f"{x:.4g}"


# -- data -------------------------------------------------------------------------------

def column_list(values: list[str] | None) -> list[str]:
    """`--categorical a,b --categorical c` and `--categorical a b` alike."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def ingest_options(args) -> data_pb2.IngestOptions:
    return data_pb2.IngestOptions(target_column=args.target or "", exclude_columns=column_list(args.exclude),
                                  categorical_columns=column_list(args.categorical),
                                  numeric_columns=column_list(args.numeric), missing_policy=MISSING[args.missing])


def column_kind(c: data_pb2.Column) -> str:
    if c.role != data_pb2.COLUMN_ROLE_FEATURE:
        return "-"
    return data_pb2.ColumnKind.Name(c.kind).removeprefix("COLUMN_KIND_").lower()


def show_version(v: data_pb2.DatasetVersion) -> None:
    kind = "classification" if v.task_kind == data_pb2.TASK_KIND_CLASSIFICATION else "regression"
    print(f"{v.name}@{v.version}  {v.row_count} rows  {kind}  target {v.target}  from {v.source_uri}")
    if v.rows_dropped:
        why = f" ({v.rows_missing_target} without a target)" if v.rows_missing_target else ""
        print(f"{v.rows_dropped} rows dropped{why}")
    print_table(["column", "role", "type", "missing", "note"],
                [[c.name, data_pb2.ColumnRole.Name(c.role).removeprefix("COLUMN_ROLE_").lower(), column_kind(c),
                  c.missing, c.note] for c in v.columns])


def data_register(client, args):
    r = client("RegisterDataset", data_pb2.RegisterDatasetRequest(name=args.name, uri=args.uri, options=ingest_options(args)), timeout=3600)
    return emit(args, r, lambda: (print("registered" if r.created else "already registered (same bytes)"), show_version(r.version)))


def data_upload(client, args):
    path = Path(args.file)
    if not path.is_file():
        raise KubetuneError(f"no such file: {path}")
    name = args.name or path.stem.lower()

    def parts():
        yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(name=name, filename=path.name, options=ingest_options(args)))
        with open(path, "rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                yield data_pb2.UploadDatasetRequest(chunk=chunk)

    r = client.stub.UploadDataset(parts(), timeout=3600, metadata=client.metadata)
    return emit(args, r, lambda: (print("uploaded" if r.created else "already registered (same bytes)"), show_version(r.version)))


def data_list(client, args):
    r = client("ListDatasets", data_pb2.ListDatasetsRequest())
    rows = [[d.name, v.version, v.row_count, len([c for c in v.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE]),
             v.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M")] for d in r.datasets for v in d.versions]
    return emit(args, r, lambda: print_table(["name", "version", "rows", "features", "created"], rows))


def data_show(client, args):
    r = client("GetDataset", data_pb2.GetDatasetRequest(ref=args.ref))
    return emit(args, r, lambda: show_version(r.version))


# -- studies ----------------------------------------------------------------------------

def study_spec(args) -> pb.StudySpec:
    space = [parse_param(PARAM_FLAGS[flag], getattr(args, flag)) for flag in PARAM_FLAGS if getattr(args, flag)]
    for item in args.param or []:
        name, _, text = item.partition("=")
        space.append(parse_param(name.strip(), text))
    objectives = []
    for item in args.objective or []:
        metric, _, direction = item.partition(":")
        objectives.append(pb.Objective(metric=metric, direction=pb.DIRECTION_MAXIMIZE if direction == "max" else pb.DIRECTION_MINIMIZE))
    return pb.StudySpec(
        name=args.name or "", dataset=args.dataset, search_space=space, objectives=objectives,
        sampler=SAMPLERS[args.sampler], seed=args.seed or 0, pruner=PRUNERS[args.pruner], n_trials=args.trials,
        max_parallel=args.parallel, max_epochs=args.epochs, timeout_seconds=args.timeout,
        early_stopping_patience=args.patience or 0, cv_folds=args.cv,
    )


def study_rows(studies):
    return [[s.id, s.dataset_version, STUDY_STATES.get(s.state, "?"),
             f"{s.counts.complete + s.counts.pruned + s.counts.fail}/{s.spec.n_trials}",
             s.counts.pruned, s.counts.fail, fmt(s.best_values[0]) if s.best_values else "-"] for s in studies]


STUDY_HEADERS = ["study", "dataset", "state", "done", "pruned", "failed", "best"]


FLAG_OF_PARAM = {param: f"--{flag.replace('_', '-')}" for flag, param in PARAM_FLAGS.items()}


def print_search(spec: pb.StudySpec, chosen: bool) -> None:
    """What the study searches (as the service recorded it) and what stays fixed."""
    searched = {p.name for p in spec.search_space}
    how = "" if chosen else " (the default space; range flags such as --lr choose others)"
    print(f"searching {len(spec.search_space)} hyperparameters{how}:")
    print_table(["  hyperparameter", "range", "flag"],
                [[f"  {p.name}", describe(p), FLAG_OF_PARAM.get(p.name, f"--param {p.name}=...")] for p in spec.search_space])
    fixed = [f"{k} {hyperparams.format_value(v)}" for k, v in hyperparams.DEFAULTS.items() if k not in searched]
    if fixed:
        print(f"fixed: {', '.join(fixed)}")


def study_create(client, args):
    spec = study_spec(args)
    # Every check the service makes, nothing made (AIP-163's validate_only): a refused
    # spec is reported in the service's words before anything exists; --dry-run ends here.
    planned = client("CreateStudy", pb.CreateStudyRequest(spec=spec, validate_only=True)).study
    if args.dry_run:
        if not args.json:
            print_search(planned.spec, chosen=bool(spec.search_space))
            print(f"would create study {planned.id}: {planned.spec.n_trials} trials on {planned.dataset_version}")
        return emit(args, planned)
    study = client("CreateStudy", pb.CreateStudyRequest(spec=spec)).study
    if not args.json:
        # Trials are queued but none has reported yet: this is what they will search.
        print_search(study.spec, chosen=bool(spec.search_space))
        print(f"created study {study.id}: {study.spec.n_trials} trials on {study.dataset_version}, seed {study.spec.seed}",
              flush=True)
    if args.watch:
        return watch(client, study.id, args)
    return emit(args, study)


def study_list(client, args):
    r = client("ListStudies", pb.ListStudiesRequest())
    return emit(args, r, lambda: print_table(STUDY_HEADERS, study_rows(r.studies)))


def study_show(client, args):
    study = client("GetStudy", pb.GetStudyRequest(study_id=args.id)).study
    trials = client("ListTrials", pb.ListTrialsRequest(study_id=args.id)).trials
    if args.json:
        print(json.dumps({"study": as_dict(study), "trials": [as_dict(t) for t in trials]}, indent=2))
        return 0
    print_table(STUDY_HEADERS, study_rows([study]))
    line = quality.headline(study.task_kind, dict(study.best_trial.metrics), dict(study.baseline.metrics),
                            study.baseline.model, cv_folds=study.spec.cv_folds)
    if line:
        print(line)
    elif study.baseline.error:
        print(f"no baseline: {study.baseline.error}")
    print(f"sampler {hyperparams.SAMPLER_NAMES.get(study.spec.sampler, '?')} · seed {study.spec.seed} · "
          f"pruner {hyperparams.PRUNER_NAMES.get(study.spec.pruner, '?')}")
    print()
    keys = sorted({k for t in trials for k in t.params})
    print_table(["trial", "state", "value", "epochs", *keys],
                [[t.number, TRIAL_STATES.get(t.state, "?"), fmt(t.values[0]) if t.values else "-", t.epochs_done,
                  *[t.params.get(k, "") for k in keys]] for t in trials])
    return 0


def progress_line(study: pb.Study) -> str:
    c, n = study.counts, study.spec.n_trials
    done = c.complete + c.pruned + c.fail
    bar = "#" * int(30 * done / max(1, n))
    best = fmt(study.best_values[0]) if study.best_values else "-"
    return f"[{bar:<30}] {done}/{n} done · {c.running} running · {c.pruned} pruned · {c.fail} failed · best {best}"


def watch(client, study_id: str, args) -> int:
    final = None
    for update in client.stream("WatchStudy", pb.WatchStudyRequest(study_id=study_id)):
        if update.HasField("event") and update.event.WhichOneof("payload") == "epoch_completed":
            continue
        study = client("GetStudy", pb.GetStudyRequest(study_id=study_id)).study
        final = study
        if not args.json:
            print("\r" + progress_line(study), end="", flush=True)
    if not args.json:
        print()
    if final is not None:
        emit(args, final, lambda: print(f"study {study_id} {STUDY_STATES.get(final.state, '?')}"))
    return 0


def study_watch(client, args):
    return watch(client, args.id, args)


def study_stop(client, args):
    study = client("StopStudy", pb.StopStudyRequest(study_id=args.id)).study
    return emit(args, study, lambda: print(f"stopped {study.id}: running trials stop at their next epoch"))


def study_resume(client, args):
    study = client("ResumeStudy", pb.ResumeStudyRequest(study_id=args.id)).study
    return emit(args, study, lambda: print(f"resumed {study.id}"))


# -- runs -------------------------------------------------------------------------------

def runs_list(client, args):
    request = tracking_pb2.ListRunsRequest(study_id=args.study or "", trials_only=bool(args.study),
                                           page_size=args.limit, descending=args.desc)
    if args.sort:
        request.sort_kind, request.sort_key = tracking_pb2.FIELD_KIND_METRIC, args.sort
    r = client("ListRuns", request)
    metric = args.sort or "val_loss"
    rows = [[run.run_id, run.name, tracking_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower(),
             fmt(run.metrics[metric]) if metric in run.metrics else "-"] for run in r.runs]
    return emit(args, r, lambda: print_table(["run", "name", "status", metric], rows))


def runs_compare(client, args):
    r = client("CompareRuns", tracking_pb2.CompareRunsRequest(run_ids=args.runs))

    def table():
        ids = list(args.runs)
        print_table(["param", *ids], [[k, *[v.values.get(i, "") for i in ids]] for k, v in sorted(r.differing_params.items())])
        print()
        print_table(["metric", *ids], [[k, *[fmt(v.values[i]) if i in v.values else "" for i in ids]] for k, v in sorted(r.metrics.items())])

    return emit(args, r, table)


# -- models -----------------------------------------------------------------------------

def model_register(client, args):
    # A run's first registration packages its model (services/common/packed_model.py): seconds.
    v = client("RegisterModel", registry_pb2.RegisterModelRequest(run_id=args.run_id, name=args.name, alias=args.alias or ""),
               timeout=300).version
    return emit(args, v, lambda: print(f"registered {v.name} version {v.version}" + (f" as @{args.alias}" if args.alias else "")))


def model_list(client, args):
    r = client("ListModels", registry_pb2.ListModelsRequest())
    rows = [[m.name, len(m.versions), ", ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items()))] for m in r.models]
    return emit(args, r, lambda: print_table(["model", "versions", "aliases"], rows))


def model_show(client, args):
    m = client("GetModel", registry_pb2.GetModelRequest(name=args.name)).model
    rows = [[v.version, ",".join(v.aliases), v.run_id, v.study_id, v.dataset_version,
             ", ".join(f"{k}={fmt(x)}" for k, x in sorted(v.metrics.items()) if k.startswith("test/") or k == "val_loss")]
            for v in m.versions]
    return emit(args, m, lambda: print_table(["version", "aliases", "run", "study", "dataset", "metrics"], rows))


def model_alias(client, args):
    v = client("SetAlias", registry_pb2.SetAliasRequest(name=args.name, version=args.version, alias=args.alias)).version
    return emit(args, v, lambda: print(f"{args.name}@{args.alias} -> version {v.version}"))


PREDICT_BATCH = 10_000


def model_inputs(client, ref: str) -> tuple[registry_pb2.ModelVersion, list[Column]]:
    """The version `ref` names and its input columns (kinds), from the registry."""
    (version,) = client("GetLineage", registry_pb2.GetLineageRequest(model=ref)).versions
    columns = columns_of(version)
    if not columns:
        raise KubetuneError(f"model {ref} names no input columns; it cannot predict from a CSV")
    return version, columns


def read_csv_rows(path: Path, columns: list[Column]) -> tuple[Table, list[str]]:
    """The CSV's rows for the model, every value checked for its column's kind: (table,
    the columns the model ignores). One clear KubetuneError for anything unreadable."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise KubetuneError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise KubetuneError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        table = read_table(text, columns, str(path))
        return table, check_table(table, columns, str(path))
    except BadTable as exc:
        raise KubetuneError(str(exc)) from None


def model_predict(client, args):
    version, columns = model_inputs(client, args.model)
    table, ignored = read_csv_rows(Path(args.csv), columns)
    # The version found above answers every batch, even if the alias moves meanwhile.
    ref = f"{version.name}/{version.version}"
    predictions = []
    for start in range(0, len(table.rows), PREDICT_BATCH):
        batch = table.rows[start:start + PREDICT_BATCH]
        r = client("Predict", registry_pb2.PredictRequest(
            model=ref, columns=table.header, rows=[registry_pb2.FeatureRow(text_values=row) for row in batch]),
            timeout=300)
        if len(r.predictions) != len(batch):
            raise KubetuneError(f"the registry answered {len(r.predictions)} predictions for {len(batch)} rows")
        predictions.extend(r.predictions)
    if ignored:
        print(f"kubetune: ignored column{'s' if len(ignored) > 1 else ''} the model does not use: "
              f"{', '.join(ignored)}", file=sys.stderr)
    result = registry_pb2.PredictResponse(model=version.name, version=version.version, predictions=predictions,
                                          ignored_columns=ignored)
    if args.json:
        print(json.dumps(as_dict(result), indent=2))
        return 0
    write_predictions(predictions, args.output)
    if args.output:
        print(f"{len(predictions)} predictions from {args.model} (version {version.version}) written to {args.output}")
    return 0


def write_predictions(predictions, output: str | None) -> None:
    """Regression: the value in target units; classification: the label and one
    probability per class. A file is written whole or not at all."""
    labels = sorted({k for p in predictions for k in p.probabilities})
    if not output:
        writer = csv.writer(sys.stdout)
        writer.writerow(["prediction", *(f"proba_{k}" for k in labels)])
        writer.writerows([p.label or repr(p.value), *(p.probabilities[k] for k in labels)] for p in predictions)
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["prediction", *(f"proba_{k}" for k in labels)])
            writer.writerows([p.label or repr(p.value), *(p.probabilities[k] for k in labels)] for p in predictions)
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise KubetuneError(f"cannot write {output}: {exc.strerror or exc}") from None


# -- wiring -----------------------------------------------------------------------------

def add_client_commands(sub) -> None:
    common = argparse_common()

    def command(group, name, handler, help_text, **kw):
        p = group.add_parser(name, help=help_text, parents=[common], **kw)
        p.set_defaults(handler=lambda args: run_command(handler, args))
        return p

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="sub", required=True)
    for name, handler in (("register", data_register), ("upload", data_upload)):
        p = command(data, name, handler, f"{name} a dataset")
        p.add_argument("uri" if name == "register" else "file")
        p.add_argument("--name", required=name == "register")
        p.add_argument("--target", help="target column of a single table")
        p.add_argument("--exclude", action="append", metavar="A,B", help="columns to leave out")
        p.add_argument("--categorical", action="append", metavar="A,B",
                       help="columns to read as categories (integers, or text kubetune would exclude)")
        p.add_argument("--numeric", action="append", metavar="A,B", help="columns to read as numbers")
        p.add_argument("--missing", choices=list(MISSING), default="impute",
                       help="missing feature values: impute (the model fills them from the training split), "
                            "drop the rows, or refuse the file; rows without a target are always dropped "
                            "(except with refuse)")
    command(data, "list", data_list, "list datasets")
    command(data, "show", data_show, "show a dataset version").add_argument("ref", help="NAME or NAME@VERSION")

    study = sub.add_parser("study", help="tuning studies").add_subparsers(dest="sub", required=True)
    p = command(study, "create", study_create, "create (and optionally watch) a study")
    p.add_argument("--dataset", required=True)
    p.add_argument("--trials", type=count, default=20, help="trials to run (default 20)")
    p.add_argument("--parallel", type=count, default=2, help="trials at once (default 2)")
    p.add_argument("--epochs", type=count, default=20, help="epochs per trial (default 20)")
    for flag, param in PARAM_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=f"{param}: LOW..HIGH[:log][:step=S] or A,B,C")
    p.add_argument("--param", action="append", help="any hyperparameter: NAME=RANGE (e.g. units_l0=4..64)")
    p.add_argument("--objective", action="append", help="METRIC[:min|max], repeatable (several need nsga2)")
    p.add_argument("--sampler", choices=list(SAMPLERS), default="tpe")
    p.add_argument("--pruner", choices=list(PRUNERS), default="median")
    p.add_argument("--seed", type=bounded(1, hyperparams.MAX_SEED),
                   help="sampler seed, to repeat a study (default: one drawn per study, shown by `study show`)")
    p.add_argument("--timeout", type=seconds, default=0, help="time budget in seconds (default 0: none)")
    p.add_argument("--patience", type=count,
                   help="epochs without a better validation loss before a trial stops (default 5)")
    p.add_argument("--cv", type=zero_or_more, default=0, metavar="K",
                   help="k-fold cross-validation as the objective (2-10 folds), for small tables "
                        "(default 0: one validation split)")
    p.add_argument("--name")
    p.add_argument("--watch", action="store_true", help="follow the study until it ends")
    p.add_argument("--dry-run", action="store_true",
                   help="have the service check the study and show what it would search; create nothing")
    command(study, "list", study_list, "list studies")
    for name, handler in (("show", study_show), ("watch", study_watch), ("stop", study_stop), ("resume", study_resume)):
        command(study, name, handler, f"{name} a study").add_argument("id")

    runs = sub.add_parser("runs", help="MLflow runs").add_subparsers(dest="sub", required=True)
    p = command(runs, "list", runs_list, "list runs")
    p.add_argument("--study")
    p.add_argument("--sort", help="metric to sort by (ascending unless --desc)")
    p.add_argument("--desc", action="store_true")
    p.add_argument("--limit", type=bounded(1, 1000), default=50, help="runs to list, 1 to 1000 (default 50)")
    command(runs, "compare", runs_compare, "compare runs").add_argument("runs", nargs="+")

    model = sub.add_parser("model", help="registered models").add_subparsers(dest="sub", required=True)
    p = command(model, "register", model_register, "register a run's model")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--name", required=True)
    p.add_argument("--alias")
    command(model, "list", model_list, "list models")
    command(model, "show", model_show, "show a model's versions").add_argument("name")
    p = command(model, "alias", model_alias, "point an alias at a version")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("alias")
    p = command(model, "predict", model_predict, "predict from a CSV of feature rows")
    p.add_argument("model", help="NAME@ALIAS or NAME/VERSION")
    p.add_argument("--csv", required=True, help="rows to predict: a header row names the columns (any order, extra "
                                                "ones ignored); without one, exactly the model's columns in order")
    p.add_argument("--output", "-o", help="write predictions here (default: stdout)")


def argparse_common():
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", default=os.environ.get("KUBETUNE_GATEWAY", f"127.0.0.1:{PORTS['gateway']}"),
                        help="gateway address (KUBETUNE_GATEWAY)")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")
    return common


def run_command(handler, args) -> int:
    try:
        return handler(Client(args.gateway, os.environ.get("KUBETUNE_TOKEN", "")), args)
    except KubetuneError as exc:
        print(f"kubetune: {in_flag_terms(exc.message)}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        details = (exc.details() or exc.code().name).split(" [request ")[0]
        if exc.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details.lower():
            details = f"cannot reach the gateway at {args.gateway}; is `kubetune up` running? (--gateway, KUBETUNE_GATEWAY)"
        print(f"kubetune: {exc.code().name.lower().replace('_', ' ')}: {in_flag_terms(details)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
