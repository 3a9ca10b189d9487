"""StudySummary's domain: trials given directly (no Optuna storage needed); the
service path is in tests/tuning/test_study_queries.py."""

import math
import random

from services.tuning.summary import ParamSpace, StudySource, StudyView, SummaryCache, TrialView, summarize

SPACE = (
    ParamSpace("learning_rate", "float", 1e-4, 1e-1, log=True),
    ParamSpace("n_layers", "int", 1, 4),
    ParamSpace("optimizer", "categorical", choices=("adam", "sgd")),
)


def trials(n=30, seed=0):
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        lr = 10 ** rnd.uniform(-4, -1)
        layers = rnd.randint(1, 4)
        opt = rnd.choice(["adam", "sgd"])
        params = {"learning_rate": repr(lr), "n_layers": str(layers), "optimizer": opt}
        # The value depends strongly on the learning rate, barely on the rest.
        value = (math.log10(lr) + 2.5) ** 2 + 0.01 * layers
        state = "COMPLETE" if i % 5 else "PRUNED"
        out.append(TrialView(i, state, params, (value,) if state == "COMPLETE" else (), (value + 1, value + 2)))
    out.append(TrialView(n, "RUNNING", {"learning_rate": "0.01"}))
    out.append(TrialView(n + 1, "FAIL", {}))
    return out


def test_history_counts_parallel_and_importances():
    ts = trials()
    s = summarize(StudyView("s1", ("minimize",), SPACE, "r1"), ts)
    assert s.counts_by_state == {"COMPLETE": 24, "PRUNED": 6, "RUNNING": 1, "FAIL": 1}
    assert [h.trial for h in s.history] == [t.number for t in ts if t.state != "RUNNING"]
    complete = [t.values[0] for t in ts if t.state == "COMPLETE"]
    assert s.history[-1].best_so_far == min(complete)
    bests = [h.best_so_far for h in s.history if not math.isnan(h.best_so_far)]
    assert bests == sorted(bests, reverse=True)  # never gets worse
    pruned = next(h for h in s.history if h.state == "PRUNED" and h.trial == 5)
    assert pruned.value == ts[5].val_loss_curve[-1]
    assert len(s.parallel_coordinates) == 24
    names = [k for k, _ in s.importances]
    assert set(names) == {"learning_rate", "n_layers", "optimizer"}
    assert names[0] == "learning_rate"
    assert abs(sum(v for _, v in s.importances) - 1.0) < 1e-6


def test_maximize_and_space_read_off_the_trials():
    ts = trials()
    s = summarize(StudyView("s1", ("maximize",), (), "r1"), ts)
    complete = [t.values[0] for t in ts if t.state == "COMPLETE"]
    assert s.history[-1].best_so_far == max(complete)
    assert {k for k, _ in s.importances} >= {"learning_rate"}


def test_too_few_trials_give_no_importances():
    s = summarize(StudyView("s1"), [TrialView(0, "COMPLETE", {"learning_rate": "0.1"}, (1.0,))])
    assert s.importances == []
    assert s.history[0].best_so_far == 1.0


class FakeSource(StudySource):
    def __init__(self):
        self.revision = "a"
        self.listed = 0

    async def get_study(self, study_id):
        return StudyView(study_id, ("minimize",), SPACE, self.revision)

    async def list_trials(self, study_id):
        self.listed += 1
        return trials()


async def test_cache_recomputes_only_when_the_study_changed():
    source = FakeSource()
    cache = SummaryCache(source)
    first = await cache.get("s1")
    assert await cache.get("s1") is first
    assert (cache.computed, source.listed) == (1, 1)
    source.revision = "b"
    second = await cache.get("s1")
    assert second is not first and second.revision == "b"
    assert cache.computed == 2


async def test_a_summary_whose_callers_gave_up_is_still_kept():
    """A computation outlasting its caller's deadline was cancelled with it and never
    kept: on a loaded machine every request started fANOVA again (the soak)."""
    import asyncio

    source = FakeSource()
    cache = SummaryCache(source)
    waiting = asyncio.ensure_future(cache.get("s1"))
    while source.listed == 0:
        await asyncio.sleep(0.01)
    waiting.cancel()  # the caller's deadline, during the computation

    async def computed():
        while cache.computed == 0:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(computed(), 30)  # cancelled with its caller, it never ends
    kept = await cache.get("s1")
    assert kept.revision == "a" and kept.importances
    assert (cache.computed, source.listed) == (1, 1)


def test_a_running_study_recomputes_importances_as_it_grows_by_a_tenth():
    """fANOVA costs O(trials): at every trial's end it was O(trials²) for a study."""
    ts = trials(60)
    complete = [t for t in ts if t.state == "COMPLETE"]  # 48 of them
    first = summarize(StudyView("s1", ("minimize",), SPACE, "r1", running=True), ts[:40])
    assert first.importances_from == 32 and first.importances
    # 33 completed is under 32 × 1.1 = 35.2: the importances are kept; 36 is over it.
    kept = summarize(StudyView("s1", ("minimize",), SPACE, "r2", running=True), ts[:42], first)
    assert kept.importances_from == 32 and kept.importances is first.importances
    assert [h.trial for h in kept.history] == [h.trial for h in summarize(StudyView("s1"), ts[:42]).history]
    grown = summarize(StudyView("s1", ("minimize",), SPACE, "r3", running=True), ts[:45], kept)
    assert grown.importances_from == 36 and grown.importances is not first.importances
    done = summarize(StudyView("s1", ("minimize",), SPACE, "r4", running=False), ts, grown)
    assert done.importances_from == len(complete)


def test_importances_leave_no_forest_behind():
    """fANOVA's trees (64 a computation) are freed once the importances are known: Optuna's
    class-wide lru_cache kept every one alive, and the tuning service grew with each
    computation (tests/reliability/test_soak.py)."""
    import gc

    from optuna.importance._fanova._tree import _FanovaTree

    def trees() -> int:
        gc.collect()
        return sum(isinstance(o, _FanovaTree) for o in gc.get_objects())

    # Counted before: pytest's log capture keeps the tracebacks of earlier tests' refusals,
    # and with them the forest those were computing.
    before = trees()
    study = StudyView("s1", ("minimize",), SPACE, "r1")
    for seed in range(3):
        assert summarize(study, trials(seed=seed)).importances
    assert trees() == before
