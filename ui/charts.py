"""ECharts options for `ui.echart`, built from plain data. Pure functions, no NiceGUI,
so the pages and the tests share them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#1098ad", "#7048e8", "#f59f00", "#5c940d",
           "#d6336c", "#0b7285", "#862e9c", "#a61e4d"]
LOG_SCALE_PARAMS = {"learning_rate", "weight_decay"}


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _base(title: str, x_name: str, y_name: str, *, x_type: str = "value", y_type: str = "value") -> dict:
    return {
        "animation": False,
        "title": {"text": title, "left": "center", "textStyle": {"fontSize": 13, "fontWeight": 500}},
        "grid": {"left": 60, "right": 24, "top": 40, "bottom": 48, "containLabel": False},
        "tooltip": {"trigger": "item"},
        "xAxis": {"type": x_type, "name": x_name, "nameLocation": "middle", "nameGap": 28, "scale": True},
        "yAxis": {"type": y_type, "name": y_name, "nameLocation": "middle", "nameGap": 45, "scale": True},
        "series": [],
    }


def best_so_far(values: Iterable[tuple[int, float]], maximize: bool) -> list[list[float]]:
    """[trial, best value up to and including that trial] for each finished trial, in trial order."""
    out, best = [], None
    for trial, value in sorted(values):
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value > best if maximize else value < best):
            best = value
        out.append([trial, best])
    return out


def history(points: list[tuple[int, float]], metric: str, maximize: bool) -> dict:
    """Optimization history: each finished trial's value and the best so far."""
    opts = _base("Optimization history", "trial", metric)
    opts["legend"] = {"top": 0, "right": 8, "data": ["trial value", "best so far"]}
    opts["title"]["left"] = 8
    opts["xAxis"]["minInterval"] = 1
    scatter = [[t, v] for t, v in sorted(points) if finite(v) is not None]
    opts["series"] = [
        {"name": "trial value", "type": "scatter", "data": scatter, "symbolSize": 9,
         "itemStyle": {"color": PALETTE[0]}},
        {"name": "best so far", "type": "line", "step": "end", "data": best_so_far(points, maximize),
         "symbol": "none", "lineStyle": {"color": PALETTE[1], "width": 2}},
    ]
    return opts


def learning_curves(curves: dict[str, list[float]], metric: str = "val_loss", title: str = "Learning curves",
                    highlight: set[str] | None = None, y_log: bool = False) -> dict:
    """One line per trial or run: `curves` maps a label to its values per epoch (index = epoch)."""
    opts = _base(title, "epoch", metric, y_type="log" if y_log else "value")
    opts["tooltip"] = {"trigger": "axis"}
    opts["legend"] = {"type": "scroll", "bottom": 0, "data": list(curves)}
    opts["grid"]["bottom"] = 64
    opts["xAxis"]["minInterval"] = 1
    opts["series"] = [
        {"name": label, "type": "line", "data": [[i, finite(v)] for i, v in enumerate(values)],
         "showSymbol": len(values) < 30, "symbolSize": 5, "connectNulls": True,
         "lineStyle": {"width": 3 if highlight and label in highlight else 1.5},
         "itemStyle": {"color": PALETTE[i % len(PALETTE)]}}
        for i, (label, values) in enumerate(curves.items())
    ]
    return opts


def metric_lines(series: dict[str, list[tuple[int, float]]], title: str, y_name: str) -> dict:
    """Several runs' metric histories on one chart: label -> [(step, value)]."""
    opts = _base(title, "epoch", y_name)
    opts["tooltip"] = {"trigger": "axis"}
    opts["legend"] = {"type": "scroll", "bottom": 0, "data": list(series)}
    opts["grid"]["bottom"] = 64
    opts["xAxis"]["minInterval"] = 1
    opts["series"] = [
        {"name": label, "type": "line", "data": [[s, finite(v)] for s, v in points], "showSymbol": len(points) < 30,
         "symbolSize": 5, "itemStyle": {"color": PALETTE[i % len(PALETTE)]}}
        for i, (label, points) in enumerate(series.items())
    ]
    return opts


def importances(items: list[tuple[str, float]]) -> dict:
    """Horizontal bars, most important on top."""
    items = sorted(items, key=lambda x: x[1])
    opts = _base("Parameter importance", "importance", "", x_type="value", y_type="category")
    opts["grid"]["left"] = 110
    opts["yAxis"] = {"type": "category", "data": [p for p, _ in items]}
    opts["xAxis"]["min"] = 0
    opts["series"] = [{"type": "bar", "data": [round(v, 4) for _, v in items], "itemStyle": {"color": PALETTE[0]},
                       "label": {"show": True, "position": "right", "formatter": "{c}"}}]
    return opts


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def parallel_coordinates(rows: list[tuple[int, dict[str, str], float]], params: list[str], metric: str,
                         maximize: bool = False) -> dict:
    """One line per finished trial across its parameters and its objective value;
    the colour is the objective (darker is better)."""
    axes = []
    for i, p in enumerate(params):
        values = [r[1].get(p) for r in rows if p in r[1]]
        if values and all(_is_number(v) for v in values):
            axis = {"dim": i, "name": p, "type": "log" if p in LOG_SCALE_PARAMS and all(float(v) > 0 for v in values)
                    else "value", "scale": True}
        else:
            axis = {"dim": i, "name": p, "type": "category", "data": sorted({v for v in values if v is not None})}
        axes.append(axis)
    axes.append({"dim": len(params), "name": metric, "type": "value", "scale": True})
    numeric = [a["type"] != "category" for a in axes[:-1]]
    data = []
    for _trial, ps, value in rows:
        if finite(value) is None:
            continue
        line = [(float(ps[p]) if numeric[i] else ps[p]) if p in ps else None for i, p in enumerate(params)]
        data.append([*line, value])
    values = [d[-1] for d in data]
    opts = {
        "animation": False,
        "title": {"text": "Parallel coordinates", "left": "center", "textStyle": {"fontSize": 13, "fontWeight": 500}},
        "parallel": {"left": 50, "right": 120, "top": 60, "bottom": 30},
        "parallelAxis": axes,
        "tooltip": {"trigger": "item"},
        "series": [{"type": "parallel", "data": data, "lineStyle": {"width": 2, "opacity": 0.7}}],
    }
    if values:
        opts["visualMap"] = {"min": min(values), "max": max(values), "dimension": len(params), "right": 0,
                             "top": "middle", "calculable": True, "itemHeight": 100,
                             "inRange": {"color": ["#1c3faa", "#9bb0ff", "#ffd8a8"] if not maximize
                                         else ["#ffd8a8", "#9bb0ff", "#1c3faa"]},
                             "precision": 3, "text": [metric, ""], "textStyle": {"fontSize": 11}}
    return opts


def slice_plot(param: str, points: list[tuple[str, float, int]], metric: str) -> dict:
    """A parameter's values against the objective, one dot per finished trial."""
    numeric = points and all(_is_number(x) for x, _, _ in points)
    x_type = "value"
    if numeric and param in LOG_SCALE_PARAMS and all(float(x) > 0 for x, _, _ in points):
        x_type = "log"
    if not numeric:
        x_type = "category"
    opts = _base(f"Slice: {param}", param, metric, x_type=x_type)
    if x_type == "category":
        opts["xAxis"]["data"] = sorted({x for x, _, _ in points})
        del opts["xAxis"]["scale"]
    data = [[float(x) if numeric else x, v, t] for x, v, t in points if finite(v) is not None]
    opts["tooltip"] = {"trigger": "item"}
    opts["series"] = [{"type": "scatter", "data": data, "symbolSize": 10, "itemStyle": {"color": PALETTE[0]},
                       "encode": {"x": 0, "y": 1, "tooltip": [2, 0, 1]}}]
    return opts


def histogram(counts: list[int], edges: list[float], name: str) -> dict:
    """Bars over bins: `counts` over `len(counts) + 1` edges."""
    labels = [f"{edges[i]:.3g}" for i in range(len(counts))] if len(edges) > len(counts) else [str(i) for i in
                                                                                                range(len(counts))]
    return {
        "animation": False,
        "title": {"text": name, "left": "center", "textStyle": {"fontSize": 12, "fontWeight": 500}},
        "grid": {"left": 36, "right": 8, "top": 28, "bottom": 24},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "data": labels, "axisLabel": {"fontSize": 9, "interval": "auto"}},
        "yAxis": {"type": "value", "minInterval": 1, "axisLabel": {"fontSize": 9}},
        "series": [{"type": "bar", "data": list(counts), "barCategoryGap": "5%", "itemStyle": {"color": PALETTE[0]}}],
    }


def category_counts(categories: list[str], counts: list[int]) -> dict:
    """Horizontal bars: a categorical column's most frequent categories."""
    return {
        "animation": False,
        "grid": {"left": 80, "right": 8, "top": 8, "bottom": 20},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value", "minInterval": 1, "axisLabel": {"fontSize": 9}},
        "yAxis": {"type": "category", "data": list(categories)[::-1], "axisLabel": {"fontSize": 9, "width": 72,
                                                                               "overflow": "truncate"}},
        "series": [{"type": "bar", "data": list(counts)[::-1], "itemStyle": {"color": PALETTE[1]}}],
    }


def pareto_front(points: list[tuple[int, float, float, bool]], x_name: str, y_name: str) -> dict:
    """Two objectives of each completed trial, the Pareto-optimal ones marked (as Optuna
    Dashboard draws them): points are (trial, x, y, optimal)."""
    opts = _base("Pareto front", x_name, y_name)
    opts["legend"] = {"top": 0, "right": 8, "data": ["Pareto-optimal", "dominated"]}
    opts["title"]["left"] = 8
    opts["tooltip"] = {"trigger": "item"}
    best = sorted([[x, y, t] for t, x, y, on in points if on and finite(x) is not None and finite(y) is not None])
    rest = [[x, y, t] for t, x, y, on in points if not on and finite(x) is not None and finite(y) is not None]
    encode = {"x": 0, "y": 1, "tooltip": [2, 0, 1]}
    opts["series"] = [
        {"name": "Pareto-optimal", "type": "scatter", "data": best, "symbolSize": 11, "encode": encode,
         "itemStyle": {"color": PALETTE[1]}, "dimensions": [x_name, y_name, "trial"]},
        {"name": "dominated", "type": "scatter", "data": rest, "symbolSize": 8, "encode": encode,
         "itemStyle": {"color": "#adb5bd"}, "dimensions": [x_name, y_name, "trial"]},
    ]
    return opts


CONTOUR_CELLS = 24


def _axis_positions(values: list[str], log: bool) -> tuple[list[float], list[str], Callable[[str], float]]:
    """Cells along one parameter: (cell centres in [0, 1], their labels, value -> [0, 1])."""
    if values and all(_is_number(v) for v in values):
        nums = [float(v) for v in values]
        lo_i, hi_i = min(nums), max(nums)
        if all(x.is_integer() for x in nums) and hi_i - lo_i + 1 <= CONTOUR_CELLS:  # one cell per whole number
            n = int(hi_i - lo_i) + 1
            return ([(i + 0.5) / n for i in range(n)], [str(int(lo_i) + i) for i in range(n)],
                    lambda v: (float(v) - lo_i + 0.5) / n)
        use_log = log and min(nums) > 0
        f = (lambda x: math.log10(x)) if use_log else (lambda x: x)
        lo, hi = f(min(nums)), f(max(nums))
        span = (hi - lo) or 1.0
        centres = [(i + 0.5) / CONTOUR_CELLS for i in range(CONTOUR_CELLS)]
        labels = [f"{(10 ** (lo + c * span)) if use_log else lo + c * span:.3g}" for c in centres]
        return centres, labels, lambda v: (f(float(v)) - lo) / span
    cats = sorted(set(values))
    n = max(1, len(cats))
    centres = [(i + 0.5) / n for i in range(n)]
    return centres, cats, lambda v: (cats.index(v) + 0.5) / n


def contour(points: list[tuple[str, str, float, int]], x_param: str, y_param: str, metric: str,
            maximize: bool = False) -> dict:
    """Two hyperparameters against the objective, as Optuna Dashboard's contour plot: a
    surface interpolated between the completed trials (inverse-distance weighting), the
    trials on top. points are (x value, y value, objective, trial)."""
    opts = _base(f"Contour: {x_param} × {y_param}", x_param, y_param, x_type="category", y_type="category")
    opts["grid"]["right"] = 90
    opts["tooltip"] = {"trigger": "item"}
    pts = [(x, y, v, t) for x, y, v, t in points if finite(v) is not None]
    if len(pts) < 2 or not x_param or not y_param:
        opts["title"]["subtext"] = "needs two completed trials and two parameters"
        return opts
    xs, xlabels, xpos = _axis_positions([p[0] for p in pts], x_param in LOG_SCALE_PARAMS)
    ys, ylabels, ypos = _axis_positions([p[1] for p in pts], y_param in LOG_SCALE_PARAMS)
    placed = [(xpos(x), ypos(y), v, t) for x, y, v, t in pts]
    cells = []
    for i, cx in enumerate(xs):
        for j, cy in enumerate(ys):
            num = den = 0.0
            exact = None
            for px, py, v, _ in placed:
                d2 = (px - cx) ** 2 + (py - cy) ** 2
                if d2 < 1e-12:
                    exact = v
                    break
                w = 1.0 / d2
                num, den = num + w * v, den + w
            cells.append([i, j, round(exact if exact is not None else num / den, 6)])
    values = [v for _, _, v, _ in placed]
    # About six labels an axis: one per cell would print 24 numbers on top of each other.
    for axis, labels in (("xAxis", xlabels), ("yAxis", ylabels)):
        opts[axis].update({"data": labels, "scale": False,
                           "axisLabel": {"interval": (len(labels) - 1) // 6, "fontSize": 10}})
    opts["visualMap"] = {"min": min(values), "max": max(values), "dimension": 2, "right": 0, "top": "middle",
                         "calculable": True, "itemHeight": 120, "precision": 3, "text": [metric, ""],
                         "seriesIndex": 0, "textStyle": {"fontSize": 11},
                         "inRange": {"color": ["#1c3faa", "#9bb0ff", "#fff4e6"] if not maximize
                                     else ["#fff4e6", "#9bb0ff", "#1c3faa"]}}
    # Trials sit between the cells: their position along each axis in cell units.
    nx, ny = len(xs), len(ys)
    trials = [[px * nx - 0.5, py * ny - 0.5, v, t] for px, py, v, t in placed]
    opts["series"] = [
        {"type": "heatmap", "data": cells, "silent": True, "progressive": 0},
        {"type": "scatter", "data": trials, "symbolSize": 8, "encode": {"x": 0, "y": 1, "tooltip": [3, 2]},
         "dimensions": ["x", "y", metric, "trial"],
         "itemStyle": {"color": "#212529", "borderColor": "#fff", "borderWidth": 1}},
    ]
    return opts
