"""Hyperparameter sensitivity (Im, Patil, Branson): every configuration's accuracy, sorted best to worst.

A rule that is robust to its hyperparameters keeps a flat sorted curve; a fragile one falls off after its few good
configurations. Functions of result records ``{"arch", "rule", "accuracy", "params", "seed"}`` (accuracy as a
fraction; ``params`` the configuration's settings, with ``iterations`` when the study has an early-stopping axis).
Records that differ only in their seed are one configuration, averaged over its seeds. The statistics and their
bootstrap intervals are in :mod:`bioplausible.analysis.sensitivity`, which says exactly what is resampled.

The claim's direct test pairs each architecture ``dense-X`` with its plain counterpart ``X`` and, per rule,
estimates the dense − plain difference in area under the sorted curve.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..layers.swap import kept_label
from .document import Table
from .sensitivity import (
    WITHIN,
    Comparison,
    Estimate,
    SeedGrid,
    compare_areas,
    curve_estimates,
    difference_of_differences,
    seed_band,
    sorted_means,
    verdict,
)

ITERATIONS = "iterations"  # the early-stopping axis: test accuracy after this many optimizer steps
CONTROL = "bp"
SETTING_ORDER = ["depth", "activation", "lr", ITERATIONS, "width", "channels", "batch_size"]


def config_key(result: dict[str, Any]) -> str:
    """The configuration a result belongs to: its params without the seed (or the result itself when none)."""
    params = result.get("params")
    if params is None:
        return json.dumps(result.get("run", id(result)))
    return json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True, default=str)


OWNED = (("rule_options", "rule"), ("arch_options", "arch"))


def constant_options(results: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(options group, owner) -> the options with one value among that rule's (or architecture's) results.

    Resolved configs list every option of a run's own rule and architecture; the constant ones tell no grid point
    apart, and left in a cell key they would keep two rules (or two nets) from sharing any cell."""
    seen: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in results:
        params = r.get("params") or {}
        for group, owner in OWNED:
            for k, v in (params.get(group) or {}).items():
                seen[(group, str(r[owner]))][k].add(json.dumps(v, sort_keys=True, default=str))
    return {key: {k for k, values in options.items() if len(values) == 1} for key, options in seen.items()}


def cell_key(result: dict[str, Any], constant: dict[tuple[str, str], set[str]] | None = None) -> str:
    """The training run's settings without the seed and the early-stopping point (what one run per seed covers),
    and without the architecture and rule and their ``constant`` options: the same cell of two nets or two rules is
    the same grid point."""
    params = result.get("params")
    if params is None:
        return json.dumps(result.get("run", id(result)))
    kept = {k: v for k, v in params.items() if k not in ("seed", ITERATIONS, "arch", "rule")}
    for group, owner in OWNED:
        if constant is not None and isinstance(kept.get(group), dict):
            fixed = constant.get((group, str(result[owner])), set())
            kept[group] = {k: v for k, v in kept[group].items() if k not in fixed}
    return json.dumps(kept, sort_keys=True, default=str)


def seed_of(result: dict[str, Any]) -> Any:
    return result.get("seed", (result.get("params") or {}).get("seed"))


def seed_grids(results: list[dict[str, Any]]) -> dict[tuple[str, str], SeedGrid]:
    """(arch, rule) -> its accuracies per (cell, early-stopping point, seed)."""
    records: dict[tuple[str, str], list] = defaultdict(list)
    constant = constant_options(results)
    for r in results:
        point = (r.get("params") or {}).get(ITERATIONS)
        cell = cell_key(r, constant)
        records[(str(r["arch"]), method_of(r))].append((cell, point, seed_of(r), float(r["accuracy"])))
    return {pair: SeedGrid.from_records(recs) for pair, recs in sorted(records.items())}


def sorted_curves(results: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """(arch, rule) -> accuracy of each configuration (mean over its seeds), sorted best to worst."""
    return {pair: sorted_means(grid).tolist() for pair, grid in seed_grids(results).items()}


def curve_stats(accuracies: list[float]) -> dict[str, float]:
    """Best, median, fraction of configurations within 1 point of the best, and the area under the sorted curve.

    The area is the mean accuracy: the sorted curve drawn over ranks normalised to [0, 1] (each configuration a
    step of width 1/n), so it lies in [0, 1] and is comparable between studies of different sizes.
    """
    if not accuracies:
        raise ValueError("no accuracies: a sensitivity curve needs at least one configuration")
    best = max(accuracies)
    return {
        "n": len(accuracies),
        "best": best,
        "median": statistics.median(accuracies),
        "within_1pt": sum(a >= best - WITHIN - 1e-12 for a in accuracies) / len(accuracies),
        "auc": sum(accuracies) / len(accuracies),
    }


def sensitivity_stats(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """(arch, rule) -> ``curve_stats`` of its sorted curve."""
    return {pair: curve_stats(curve) for pair, curve in sorted_curves(results).items()}


def sensitivity_table(results: list[dict[str, Any]]) -> Table:
    """One row per (arch, rule) with the curve's summary statistics (accuracies in %)."""
    rows = [
        [arch, rule, s["n"], f"{100 * s['best']:.2f}", f"{100 * s['median']:.2f}", f"{s['within_1pt']:.2f}",
         f"{s['auc']:.3f}"]
        for (arch, rule), s in sensitivity_stats(results).items()
    ]  # fmt: skip
    headers = ["arch", "rule", "configs", "best acc %", "median acc %", "within 1 pt of best", "area under curve"]
    return Table.of(headers, rows)


# ------------------------------------------------------------------------------------------- intervals


def interval(e: Estimate, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    """A value and its 95 % interval as text, e.g. "92.4 [91.0, 93.5]" (scaled: points of accuracy by default)."""
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{fmt.format(scale * e.value)} [{fmt.format(scale * e.low)}, {fmt.format(scale * e.high)}]"


def curve_table(results: list[dict[str, Any]], n_boot: int = 2000, seed: int = 0) -> Table:
    """Per (arch, rule) its configurations and seeds, best and median configuration, and the area and
    the within-1-point fraction with their 95 % bootstrap intervals."""
    rows = []
    for (arch, rule), grid in seed_grids(results).items():
        curve = sorted_means(grid)
        estimates = curve_estimates(grid, n_boot, seed)
        rows.append([arch, rule, len(curve), len(grid.seeds), f"{100 * curve[0]:.2f}",
                     f"{100 * float(np.median(curve)):.2f}", interval(estimates["area"]),
                     interval(estimates["within"], digits=0)])  # fmt: skip
    headers = ["arch", "rule", "configs", "seeds", "best acc %", "median acc %", "area (mean acc %) [95 % CI]",
               "% of grid within 1 pt of best [95 % CI]"]  # fmt: skip
    return Table.of(headers, rows)


# ------------------------------------------------------------------------------------------- the claim


def dense_pairs(archs: list[str]) -> list[tuple[str, str]]:
    """(plain, dense) architecture pairs present: ``dense-X`` beside ``X``."""
    return [(a[len("dense-") :], a) for a in sorted(archs) if a.startswith("dense-") and a[len("dense-") :] in archs]


def claim_tests(results: list[dict[str, Any]], n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Per (plain, dense) pair and rule: the dense − plain comparison, and how much more the dense net gains than
    it gains under the control rule (bp), each with its interval."""
    grids = seed_grids(results)
    archs = sorted({arch for arch, _ in grids})
    rules = sorted({rule for _, rule in grids}, key=lambda r: (r != CONTROL, r))
    tests = []
    for plain, dense in dense_pairs(archs):
        for rule in rules:
            if (plain, rule) not in grids or (dense, rule) not in grids:
                continue
            comparison = compare_areas(grids[(plain, rule)], grids[(dense, rule)], n_boot, seed)
            beyond = None
            controls = [grids.get((plain, CONTROL)), grids.get((dense, CONTROL))]
            if rule != CONTROL and all(controls):
                beyond = difference_of_differences(grids[(plain, rule)], grids[(dense, rule)], *controls, n_boot, seed)
            tests.append({"plain": plain, "dense": dense, "rule": rule, "comparison": comparison, "beyond": beyond})
    return tests


def claim_table(tests: list[dict[str, Any]]) -> Table:
    """One row per (pair, rule) with the areas, their difference and the within-1-point fractions."""
    rows = []
    for t in tests:
        c: Comparison = t["comparison"]
        rows.append([
            t["rule"], f"{t['plain']} → {t['dense']}", c.n_configs, f"{c.n_seeds[0]}, {c.n_seeds[1]}",
            interval(c.area_plain), interval(c.area_dense), interval(c.area_difference, sign=True),
            interval(c.within_difference, digits=0, sign=True),
            interval(t["beyond"], sign=True) if t["beyond"] else "(control)",
        ])  # fmt: skip
    headers = ["rule", "plain → dense", "configs", "seeds", "area plain", "area dense", "Δ area (dense − plain)",
               "Δ % within 1 pt", "Δ area beyond bp's Δ"]  # fmt: skip
    return Table.of(headers, rows)


def claim_sentences(tests: list[dict[str, Any]]) -> list[str]:
    """One sentence per rule, generated from the numbers: does our data support the paper's claim that dense skip
    connections make the rule's sorted curve higher (the whole grid more accurate), for each architecture pair?"""
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in tests:
        by_rule[t["rule"]].append(t)
    sentences = []
    for rule, rule_tests in by_rule.items():
        parts = [pair_clause(t) for t in rule_tests]
        verdicts = {verdict(t["comparison"].area_difference) for t in rule_tests}
        if rule == CONTROL:
            lead = f"**{rule} (the control)**: "
        elif verdicts == {"higher"}:
            lead = f"**{rule}: supports the claim** for every pair: "
        elif "higher" in verdicts:
            lead = f"**{rule}: supports the claim only in part**: "
        else:
            lead = f"**{rule}: does not support the claim**: "
        sentences.append(lead + "; ".join(parts) + ".")
    return sentences


def pair_clause(t: dict[str, Any]) -> str:
    c: Comparison = t["comparison"]
    d = c.area_difference
    what = {
        "higher": "the dense curve lies higher",
        "lower": "the dense curve lies LOWER, against the claim",
        "inconclusive": "no difference can be told (the interval includes 0)",
    }[verdict(d)]
    text = (f"{t['dense']} against {t['plain']}, area {100 * c.area_dense.value:.1f} against "
            f"{100 * c.area_plain.value:.1f} % (Δ {interval(d, sign=True)} points): {what}")  # fmt: skip
    flat = verdict(c.within_difference)
    if flat != "inconclusive":
        text += f", with {'more' if flat == 'higher' else 'less'} of its grid within 1 point of its best"
    beyond = t.get("beyond")
    if beyond is not None:
        more = {"higher": "more than", "lower": "less than", "inconclusive": "not distinguishably more than"}
        help_ = more[verdict(beyond)]
        text += f"; dense connections help {t['rule']} {help_} they help bp ({interval(beyond, sign=True)})"
    return text


def untrained_by_backprop(results: list[dict[str, Any]], threshold: float = 0.5) -> list[str]:
    """Where the control (bp) does not train a net at this budget: "mlp depth=7 activation=sigmoid (best 19.2 %)"
    for every (arch, depth, activation) whose best configuration (over lr and iterations, mean over seeds) stays
    below ``threshold``. There a dense - plain difference measures what trains within the budget, not sensitivity."""
    by_config: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["rule"] == CONTROL:
            flat = flat_params(r)
            where = (str(r["arch"]), *(f"{k}={flat[k]}" for k in ("depth", "activation") if k in flat))
            by_config[where][config_key(r)].append(float(r["accuracy"]))
    notes = []
    for where, configs in sorted(by_config.items()):
        best = max(sum(v) / len(v) for v in configs.values())
        if best < threshold:
            notes.append(f"{' '.join(where)} (best {100 * best:.1f} %)")
    return notes


# ------------------------------------------------------------------------------------------- configurations


def method_of(result: dict[str, Any]) -> str:
    """The rule as the method a sensitivity curve stands for: layers kept on backprop (Xiao et al.'s switch) make
    another method, as the figures and Xiao et al. treat it, not a hyperparameter of the rule's curve."""
    flat = flat_params(result)
    kept = list(flat.get("bp_layers", flat.get("rule_options.bp_layers")) or [])
    return f"{result['rule']} ({kept_label(kept)})" if kept else str(result["rule"])


def flat_params(result: dict[str, Any]) -> dict[str, Any]:
    params = dict(result.get("params") or {})
    for group in ("arch_options", "rule_options"):
        params.update(params.pop(group, None) or {})
    return params


def varying_settings(results: list[dict[str, Any]]) -> list[str]:
    """The settings whose value differs between configurations (arch, rule and seed aside), in reading order."""
    flats = [flat_params(r) for r in results]
    keys = {k for f in flats for k in f} - {"seed", "arch", "rule"}
    # a setting varies when it takes two values among the runs that have it (a rule's option that only one rule
    # has, at one value, does not vary: resolved configs list every option of each run's own rule)
    varying = [k for k in keys if len({json.dumps(f[k], default=str) for f in flats if k in f}) > 1]
    return sorted(varying, key=lambda k: (SETTING_ORDER.index(k) if k in SETTING_ORDER else len(SETTING_ORDER), k))


def configuration_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Every configuration: (arch, rule), rank in its curve, every varying setting, mean and per-seed accuracy %."""
    settings = varying_settings(results)
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        groups[(str(r["arch"]), method_of(r))][config_key(r)].append(r)
    rows = []
    for (arch, rule), configs in sorted(groups.items()):
        ranked = sorted(configs.values(), key=lambda rs: -sum(r["accuracy"] for r in rs) / len(rs))
        for rank, rs in enumerate(ranked, 1):
            flat = flat_params(rs[0])
            accs = [r["accuracy"] for r in sorted(rs, key=lambda r: str(seed_of(r)))]
            spread = f"{100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else "–"
            mean, per_seed = f"{100 * sum(accs) / len(accs):.2f}", " ".join(f"{100 * a:.2f}" for a in accs)
            rows.append([arch, rule, rank, *(format_setting(flat.get(k)) for k in settings), mean, spread, per_seed])
    return ["arch", "rule", "rank", *settings, "mean acc %", "sd over seeds", "acc % per seed"], rows


def format_setting(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def configuration_table(results: list[dict[str, Any]]) -> Table:
    """Every configuration, grouped by (arch, rule), best first, every varying setting a column."""
    headers, rows = configuration_rows(results)
    return Table.of(headers, rows)


def write_results_csv(results: list[dict[str, Any]], path: str | Path) -> Path:
    """The compact results file: one row per (configuration, seed) with every varying setting."""
    settings = varying_settings(results)
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "rule", *settings, "seed", "test_accuracy", "status"])
        for r in sorted(results, key=lambda r: (r["arch"], r["rule"], config_key(r), str(seed_of(r)))):
            flat = flat_params(r)
            writer.writerow([r["arch"], r["rule"], *(format_setting(flat.get(k)) for k in settings), seed_of(r),
                             f"{r['accuracy']:.4f}", r.get("status", "ok")])  # fmt: skip
    return path


# ------------------------------------------------------------------------------------------- the figure


def arch_families(archs: list[str]) -> list[list[str]]:
    """Panels: each plain architecture with its dense counterpart; the rest alone."""
    families, placed = [], set()
    for plain, dense in dense_pairs(archs):
        families.append([plain, dense])
        placed |= {plain, dense}
    return families + [[a] for a in sorted(archs) if a not in placed]


def plot_sensitivity(results: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Im et al.'s figure: one line per (arch, rule), the configurations' test accuracy (mean over seeds) sorted
    best to worst against their rank; the band spans the sorted curves of the single seeds. One panel per
    architecture family (a plain net beside its dense counterpart)."""
    from .figures import plt, rule_colour, save_figure

    grids = seed_grids(results)
    families = arch_families(sorted({arch for arch, _ in grids}))
    rules = sorted({rule for _, rule in grids}, key=lambda r: (r != CONTROL, r))
    colours = {rule: rule_colour(rule) for rule in rules}
    fig, axes = plt.subplots(1, len(families), figsize=(6.5 * len(families), 4.8), squeeze=False, sharey=True)
    for ax, family in zip(axes[0], families):
        for arch in family:
            style = "-" if arch.startswith("dense-") or len(family) == 1 else "--"
            for rule in rules:
                if (arch, rule) not in grids:
                    continue
                grid = grids[(arch, rule)]
                curve = 100 * sorted_means(grid)
                ranks = np.arange(1, len(curve) + 1)
                low, high = seed_band(grid)
                if len(grid.seeds) > 1 and len(low):
                    ax.fill_between(np.arange(1, len(low) + 1), 100 * low, 100 * high, color=colours[rule],
                                    alpha=0.15, linewidth=0)  # fmt: skip
                ax.plot(ranks, curve, style, color=colours[rule], label=f"{arch} / {rule}",
                        marker="o" if len(curve) <= 20 else None, ms=3)  # fmt: skip
        ax.set(xlabel="configuration rank, best to worst", title=" vs ".join(family))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    axes[0][0].set_ylabel("test accuracy (%), mean over seeds; band: seeds' range")
    return save_figure(fig, path, title or "hyperparameter sensitivity (sorted best to worst)")
