"""A study as the live page sees it: a WatchStudy snapshot, then its events applied
in order. Pure logic (protobuf in, rows and chart data out), so it is tested alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kubetune.events.v1 import events_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from ui.formatting import TRIAL_STATES, duration, maximizes, number, objective_label

FINISHED = {pb.TRIAL_STATE_COMPLETE, pb.TRIAL_STATE_PRUNED, pb.TRIAL_STATE_FAIL}


@dataclass
class LiveStudy:
    study: pb.Study
    trials: dict[int, pb.Trial] = field(default_factory=dict)
    # Trial -> the epoch its curve is known from again: the epochs before it that the
    # snapshot did not have are missing (see has_holes).
    gaps: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, snapshot: pb.StudySnapshot) -> LiveStudy:
        live = cls(pb.Study())
        live.study.CopyFrom(snapshot.study)
        for t in snapshot.trials:
            live.trials[t.number] = _copy(t)
        return live

    @property
    def metric(self) -> str:
        return objective_label(self.study.spec)

    @property
    def maximize(self) -> bool:
        return maximizes(self.study.spec)

    def objectives(self) -> list[tuple[str, bool]]:
        """(metric, maximize) per objective; one (val_loss, minimise) when none is given."""
        out = [(o.metric or "val_loss", o.direction == pb.DIRECTION_MAXIMIZE or (
            o.direction == pb.DIRECTION_UNSPECIFIED and o.metric == "val_accuracy")) for o in self.study.spec.objectives]
        return out or [("val_loss", False)]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives()) > 1

    def pareto_numbers(self) -> set[int]:
        """Completed trials no other completed trial beats on every objective (Optuna's
        best_trials for several objectives)."""
        signs = [-1.0 if maximize else 1.0 for _, maximize in self.objectives()]
        done = [(n, tuple(s * v for s, v in zip(signs, t.values))) for n, t in self.trials.items()
                if t.state == pb.TRIAL_STATE_COMPLETE and len(t.values) == len(signs)
                and all(math.isfinite(v) for v in t.values)]
        return {n for n, k in done
                if not any(all(a <= b for a, b in zip(o, k)) and o != k for _, o in done)}

    def pareto_points(self, x: int = 0, y: int = 1) -> list[tuple[int, float, float, bool]]:
        """(trial, objective x, objective y, Pareto-optimal) per completed trial."""
        best = self.pareto_numbers()
        return [(n, t.values[x], t.values[y], n in best) for n, t in sorted(self.trials.items())
                if t.state == pb.TRIAL_STATE_COMPLETE and len(t.values) > max(x, y)]

    def contour_points(self, x_param: str, y_param: str) -> list[tuple[str, str, float, int]]:
        return [(self.trials[n].params[x_param], self.trials[n].params[y_param], v, n)
                for n, v in self.completed_values()
                if x_param in self.trials[n].params and y_param in self.trials[n].params]

    def trial(self, number: int) -> pb.Trial:
        if number not in self.trials:
            self.trials[number] = pb.Trial(study_id=self.study.id, number=number, state=pb.TRIAL_STATE_QUEUED)
        return self.trials[number]

    def apply(self, event: events_pb2.Event) -> str:
        """Applies one event; returns its kind (the payload's name)."""
        kind = event.WhichOneof("payload")
        p = getattr(event, kind) if kind else None
        if kind == "trial_started":
            t = self.trial(p.trial)
            t.state = pb.TRIAL_STATE_RUNNING
            t.params.clear()
            t.params.update(dict(p.params))
            t.mlflow_run_id = p.mlflow_run_id
            t.worker = p.worker
            t.started_at.CopyFrom(event.time)
            if self.study.state != pb.STUDY_STATE_RUNNING and self.study.state != pb.STUDY_STATE_STOPPED:
                self.study.state = pb.STUDY_STATE_RUNNING
        elif kind == "epoch_completed":
            t = self.trial(p.trial)
            if t.state in (pb.TRIAL_STATE_QUEUED, pb.TRIAL_STATE_UNSPECIFIED):
                t.state = pb.TRIAL_STATE_RUNNING
            if p.epoch > len(t.val_loss_curve):
                self.gaps[p.trial] = max(self.gaps.get(p.trial, 0), p.epoch)
            _set_at(t.val_loss_curve, p.epoch, p.val_loss)
            _set_at(t.train_loss_curve, p.epoch, p.train_loss)
            t.epochs_done = max(t.epochs_done, p.epoch + 1)
        elif kind == "trial_completed":
            t = self.trial(p.trial)
            t.state = pb.TRIAL_STATE_COMPLETE
            del t.values[:]
            t.values.extend(p.values)
            t.epochs_done = p.epochs_done or t.epochs_done
            t.finished_at.CopyFrom(event.time)
        elif kind == "trial_pruned":
            t = self.trial(p.trial)
            t.state = pb.TRIAL_STATE_PRUNED
            t.epochs_done = p.epochs_done or t.epochs_done
            t.reason = p.reason
            t.finished_at.CopyFrom(event.time)
        elif kind == "trial_failed":
            t = self.trial(p.trial)
            t.state = pb.TRIAL_STATE_FAIL
            t.reason = p.reason
            t.finished_at.CopyFrom(event.time)
        elif kind == "study_completed":
            self.study.state = pb.STUDY_STATE_COMPLETED
            self.study.finished_at.CopyFrom(event.time)
        elif kind == "study_stopped":
            self.study.state = pb.STUDY_STATE_STOPPED
        elif kind == "study_resumed":
            self.study.state = pb.STUDY_STATE_RUNNING
        if kind and kind.startswith("trial_") or kind == "epoch_completed":
            self._recount()
        return kind or ""

    def has_holes(self) -> bool:
        """True while some curve misses epochs: those that ended between the snapshot's
        last storage write and the start of the stream (the worker writes curves every
        second or so, events go out at once)."""
        return bool(self.gaps)

    def fill_holes(self, trials) -> None:
        """Fills missing epochs from a later ListTrials (with curves); what the live
        events brought is kept."""
        for fresh in trials:
            t = self.trials.get(fresh.number)
            if t is None:
                continue
            for mine, theirs in ((t.val_loss_curve, fresh.val_loss_curve), (t.train_loss_curve, fresh.train_loss_curve)):
                for i, value in enumerate(theirs):
                    if i >= len(mine) or math.isnan(mine[i]):
                        _set_at(mine, i, value)
            t.epochs_done = max(t.epochs_done, fresh.epochs_done)
            if len(fresh.val_loss_curve) >= self.gaps.get(fresh.number, 0):
                self.gaps.pop(fresh.number, None)

    def _recount(self) -> None:
        states = [t.state for t in self.trials.values()]
        c = self.study.counts
        c.running = states.count(pb.TRIAL_STATE_RUNNING)
        c.complete = states.count(pb.TRIAL_STATE_COMPLETE)
        c.pruned = states.count(pb.TRIAL_STATE_PRUNED)
        c.fail = states.count(pb.TRIAL_STATE_FAIL)
        best = self.best_trial()
        if best is not None:
            del self.study.best_values[:]
            self.study.best_values.extend(best.values)

    # What the page shows.

    @property
    def finished(self) -> int:
        c = self.study.counts
        return c.complete + c.pruned + c.fail

    @property
    def total(self) -> int:
        return self.study.spec.n_trials

    def progress_text(self) -> str:
        c = self.study.counts
        extra = [f"{c.running} running"] if c.running else []
        extra += [f"{c.pruned} pruned"] if c.pruned else []
        extra += [f"{c.fail} failed"] if c.fail else []
        return f"{self.finished}/{self.total} trials finished" + (f" · {', '.join(extra)}" if extra else "")

    def completed_values(self) -> list[tuple[int, float]]:
        return [(n, t.values[0]) for n, t in sorted(self.trials.items())
                if t.state == pb.TRIAL_STATE_COMPLETE and t.values and math.isfinite(t.values[0])]

    def best_trial(self) -> pb.Trial | None:
        done = [(v, n) for n, v in self.completed_values()]
        if not done:
            return None
        _, n = max(done) if self.maximize else min(done)
        return self.trials[n]

    def param_names(self) -> list[str]:
        searched = [p.name for p in self.study.spec.search_space]
        seen = {k for t in self.trials.values() for k in t.params}
        return [n for n in searched if n in seen] + sorted(seen - set(searched))

    def searched_params(self) -> list[str]:
        names = [p.name for p in self.study.spec.search_space]
        return names or self.param_names()

    def parallel_rows(self) -> list[tuple[int, dict[str, str], float]]:
        return [(n, dict(self.trials[n].params), v) for n, v in self.completed_values()]

    def slice_points(self, param: str) -> list[tuple[str, float, int]]:
        return [(self.trials[n].params[param], v, n) for n, v in self.completed_values()
                if param in self.trials[n].params]

    def curves(self, which: str = "val_loss") -> dict[str, list[float]]:
        out = {}
        for n, t in sorted(self.trials.items()):
            values = list(t.val_loss_curve if which == "val_loss" else t.train_loss_curve)
            if values:
                out[f"trial {n}"] = values
        return out

    def running_labels(self) -> set[str]:
        return {f"trial {n}" for n, t in self.trials.items() if t.state == pb.TRIAL_STATE_RUNNING}

    def table_rows(self) -> list[dict]:
        best = self.best_trial()
        pareto = self.pareto_numbers() if self.multi_objective else set()
        rows = []
        for n, t in sorted(self.trials.items(), reverse=True):
            state = TRIAL_STATES.get(t.state, "unknown")
            rows.append({
                "number": n,
                "state": state,
                "value": " / ".join(number(v) for v in t.values) if t.values else "–",
                "epochs": t.epochs_done,
                "val_loss": number(t.val_loss_curve[-1]) if t.val_loss_curve else "–",
                "params": ", ".join(f"{k}={v}" for k, v in sorted(t.params.items())),
                "duration": duration(t.started_at, t.finished_at) if t.started_at.seconds else "",
                "worker": t.worker,
                "reason": t.reason,
                "best": n in pareto if pareto else best is not None and best.number == n,
                "best_tip": "Pareto-optimal" if pareto else "best",
                "run_id": t.mlflow_run_id,
            })
        return rows


def _copy(trial: pb.Trial) -> pb.Trial:
    t = pb.Trial()
    t.CopyFrom(trial)
    return t


def _set_at(curve, index: int, value: float) -> None:
    while len(curve) < index:
        curve.append(math.nan)
    if len(curve) == index:
        curve.append(value)
    else:
        curve[index] = value
