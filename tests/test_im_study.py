"""Im, Patil & Branson's study: the statistics (on numbers whose answer is known), the early-stopping axis (exactly
what separate shorter runs give), the records a report reads, the report itself and the presets."""

import csv
import json

import numpy as np
import pytest

from bioplausible.analysis import (
    SeedGrid,
    area,
    bootstrap,
    compare_areas,
    curve_estimates,
    seed_band,
    sorted_means,
    verdict,
    within_best,
)
from bioplausible.analysis.curves import (
    claim_sentences,
    claim_tests,
    configuration_rows,
    untrained_by_backprop,
    varying_settings,
)
from bioplausible.analysis.results import results_from_runs
from bioplausible.config import TrainConfig
from bioplausible.engine import fit
from bioplausible.errors import ConfigError
from bioplausible.report.html import write_report
from bioplausible.runs import load_run
from bioplausible.studies import load_spec, preset_spec, run_sweep
from bioplausible.studies.sweep import points_of


def grid_of(acc: np.ndarray) -> SeedGrid:
    """A grid from an (n_cells, n_points, n_seeds) array: cells 0.., points 100, 200, .., seeds 0.."""
    records = [
        (c, 100 * (p + 1), s, float(acc[c, p, s]))
        for c in range(acc.shape[0])
        for p in range(acc.shape[1])
        for s in range(acc.shape[2])
    ]
    return SeedGrid.from_records(records)


def synthetic_grid(rng: np.random.Generator, cells: int = 12, points: int = 4, seeds: int = 3, noise: float = 0.01):
    """Per-cell levels spread over 0.3..0.95 (a grid with good and bad corners), rising over the points, plus
    seed noise."""
    level = rng.uniform(0.3, 0.95, size=(cells, 1, 1))
    rise = np.linspace(-0.03, 0.0, points).reshape(1, points, 1)
    return level + rise + noise * rng.standard_normal((cells, points, seeds))


# ----------------------------------------------------------------------------------------------- statistics


def test_the_curve_statistics_on_hand_made_numbers():
    acc = np.array([[[0.95, 0.95], [0.90, 0.90]], [[0.945, 0.945], [0.50, 0.60]]])  # 2 cells x 2 points x 2 seeds
    grid = grid_of(acc)
    assert sorted_means(grid).tolist() == pytest.approx([0.95, 0.945, 0.90, 0.55])
    assert area(sorted_means(grid)[None])[0] == pytest.approx((0.95 + 0.945 + 0.90 + 0.55) / 4)
    assert within_best(sorted_means(grid)[None])[0] == pytest.approx(0.5)  # 0.95 and 0.945
    low, high = seed_band(grid)  # seed 0 sorted: .95 .945 .9 .5; seed 1: .95 .945 .9 .6
    assert low.tolist() == pytest.approx([0.95, 0.945, 0.90, 0.50]) and high[-1] == pytest.approx(0.60)


def test_with_one_cell_and_identical_seeds_the_interval_collapses_to_the_value():
    """Nothing to resample: cells drawn are always the one cell, seeds all equal."""
    grid = grid_of(np.full((1, 3, 4), 0.8) + np.array([0.0, 0.05, 0.1]).reshape(1, 3, 1))
    e = curve_estimates(grid, n_boot=200)["area"]
    assert e.value == pytest.approx(0.85) and e.low == pytest.approx(0.85) and e.high == pytest.approx(0.85)


def test_a_clear_dense_advantage_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    plain = synthetic_grid(rng)
    dense = plain + 0.05 + 0.01 * rng.standard_normal(plain.shape)  # 5 points better everywhere
    c = compare_areas(grid_of(plain), grid_of(dense), n_boot=1000)
    assert c.area_difference.value == pytest.approx(0.05, abs=0.01)
    assert 0 < c.area_difference.low < c.area_difference.value < c.area_difference.high
    assert verdict(c.area_difference) == "higher" and c.n_configs == 12 * 4 and c.n_seeds == (3, 3)
    worse = compare_areas(grid_of(dense), grid_of(plain), n_boot=1000)
    assert verdict(worse.area_difference) == "lower"


def test_two_nets_with_the_same_configuration_means_have_an_interval_that_includes_zero():
    """The dense net's seeds are the plain net's, permuted within each configuration: the same means, so the
    difference is exactly 0, and the seed resampling gives it an interval on both sides."""
    rng = np.random.default_rng(2)
    plain = synthetic_grid(rng, noise=0.03)
    dense = plain[:, :, ::-1].copy()
    c = compare_areas(grid_of(plain), grid_of(dense), n_boot=1000)
    assert c.area_difference.value == pytest.approx(0.0, abs=1e-12)
    assert c.area_difference.low < 0 < c.area_difference.high and verdict(c.area_difference) == "inconclusive"


def test_the_interval_covers_the_true_difference_in_most_simulated_studies():
    """Coverage: 60 simulated studies with a known dense - plain difference of 2 points; the 95 % interval must
    contain it in most (a percentile bootstrap with 3 seeds undercovers somewhat; far less would be a bug)."""
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(60):
        truth = synthetic_grid(rng, noise=0.0)
        plain = truth + 0.02 * rng.standard_normal(truth.shape)
        dense = truth + 0.02 + 0.02 * rng.standard_normal(truth.shape)
        d = compare_areas(grid_of(plain), grid_of(dense), n_boot=400).area_difference
        covered += d.low <= 0.02 <= d.high
    assert covered >= 48, covered


def test_the_bootstrap_is_seeded_and_refuses_unaligned_grids():
    rng = np.random.default_rng(4)
    a, b = grid_of(synthetic_grid(rng)), grid_of(synthetic_grid(rng))
    first, again = compare_areas(a, b, n_boot=300, seed=5), compare_areas(a, b, n_boot=300, seed=5)
    other = compare_areas(a, b, n_boot=300, seed=6)
    assert first == again and first.area_difference.low != other.area_difference.low
    short = grid_of(synthetic_grid(rng, cells=5))
    with pytest.raises(ValueError, match="share cells"):
        bootstrap([a, short], lambda m: area(m[0]))


def test_a_configuration_one_net_lacks_is_left_out_of_both():
    acc = np.full((2, 2, 3), 0.9)
    plain, dense = grid_of(acc), grid_of(acc + 0.05)
    dense.acc[1, 1, :] = np.nan  # dense has no value at (cell 1, point 200)
    plain.acc[1, 1, :] = 0.1  # a value that, if compared, would change the plain area
    c = compare_areas(plain, dense, n_boot=100)
    assert c.n_configs == 3 and c.area_difference.value == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------- early stopping


@pytest.mark.parametrize("rule", ["fa", "dtp"])
@pytest.mark.parametrize(
    "arch, options",
    [
        ("mlp", {"depth": 2, "width": 8}),
        ("dense-mlp", {"depth": 2, "width": 8}),
        ("convnet", {"depth": 2, "channels": 3}),
        ("dense-convnet", {"depth": 2, "channels": 3}),
    ],
)
def test_early_stopping_points_equal_separate_shorter_runs(rule, arch, options, tmp_path):
    """The iteration axis is not an approximation: the test loss and accuracy a long run records after k steps are
    those a separate run of k steps (same seed) ends with, inside an epoch and across an epoch boundary."""

    def config(steps: int, eval_steps: tuple[int, ...], out: str) -> TrainConfig:
        options_ = {**options, "activation": "sigmoid"}
        return TrainConfig(rule=rule, arch=arch, arch_options=options_, dataset="digits", batch_size=512,
                           max_steps=steps, eval_steps=eval_steps, probe_every=0, seed=3, lr=1e-2, init="xavier",
                           eval_batch_size=512, progress=False, out=str(tmp_path / out))  # fmt: skip

    points = (2, 4)  # digits: 1437 training images, 3 batches of 512 per epoch: step 4 is in the second epoch
    long = load_run(fit(config(5, points, "long"), quiet=True))
    recorded = {r["step"]: r for r in long["step_metrics"]}
    assert sorted(recorded) == list(points)
    for k in points:
        short = load_run(fit(config(k, (), f"short{k}"), quiet=True))
        final = short["metrics"][-1]
        assert final["step"] == k
        assert recorded[k]["test/loss"] == final["test/loss"] and recorded[k]["test/accuracy"] == final["test/accuracy"]


# ----------------------------------------------------------------------------------------------- records


def run_dict(status: str, steps: dict[str, float], test_accuracy: float, seed: int = 0) -> dict:
    config = {"arch": "mlp", "rule": "fa", "seed": seed, "lr": 0.01, "max_steps": 300, "eval_steps": [100, 200, 300],
              "epochs": 3, "threads": 1, "arch_options": {"depth": 3}}  # fmt: skip
    summary = {"status": status, "step_test_accuracy": steps, "test_accuracy": test_accuracy}
    return {"config": config, "summary": summary, "path": f"runs/{status}"}


def test_each_early_stopping_point_is_a_configuration_and_a_diverged_run_scores_chance_after_it_diverged():
    ok = run_dict("ok", {"100": 0.5, "200": 0.7, "300": 0.8}, 0.8)
    diverged = run_dict("diverged", {"100": 0.4}, 0.1, seed=1)
    unfinished = run_dict("ok", {"100": 0.6}, 0.6, seed=2)  # a point it did not reach is left out, not invented
    records = results_from_runs([ok, diverged, unfinished])
    got = {(r["seed"], r["params"]["iterations"]): r["accuracy"] for r in records}
    assert got == {(0, 100): 0.5, (0, 200): 0.7, (0, 300): 0.8, (1, 100): 0.4, (1, 200): 0.1, (1, 300): 0.1,
                   (2, 100): 0.6}  # fmt: skip
    params = records[0]["params"]
    assert not {"max_steps", "eval_steps", "epochs", "threads"} & set(params) and params["lr"] == 0.01


# ----------------------------------------------------------------------------------------------- the report


SPEC = {
    "name": "im-tiny",
    "base": {"dataset": "synthetic", "batch_size": 64, "probe_every": 0, "arch_options": {"width": 8}},
    "grid": {
        "arch": ["mlp", "dense-mlp"],
        "rule": ["bp", "fa"],
        "arch_options.depth": [1, 2],
        "lr": [0.01, 0.05],
        "max_steps": [4],
        "eval_steps": [[2, 4]],
    },  # fmt: skip
    "seeds": [0, 1],
}


@pytest.fixture(scope="module")
def tiny_im_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("im")
    run_sweep(SPEC, folder)
    write_report(folder)
    return folder


def test_the_report_lists_every_varying_setting_and_tests_the_claim_per_rule(tiny_im_study):
    report = (tiny_im_study / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| arch") and "rank" in line)
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:6] == ["arch", "rule", "rank", "depth", "lr", "iterations"], columns
    assert "Results (ours beside the papers')" not in report  # the per-run table without settings is gone
    assert "**bp (the control)**" in report and "**fa: " in report and "dense-mlp against mlp" in report
    assert "Δ area (dense − plain)" in report and (tiny_im_study / "sensitivity.png").stat().st_size > 10_000
    with open(tiny_im_study / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 * 2 * 2 * 2  # archs x rules x depths x lrs x points x seeds
    assert {r["iterations"] for r in rows} == {"2", "4"} and {r["seed"] for r in rows} == {"0", "1"}


def test_rows_are_grouped_by_arch_and_rule_best_first(tiny_im_study):
    records = results_from_runs(json_runs(tiny_im_study))
    assert varying_settings(records) == ["depth", "lr", "iterations"]
    headers, rows = configuration_rows(records)
    groups = [(r[0], r[1]) for r in rows]
    assert groups == sorted(groups) and len(rows) == 2 * 2 * 2 * 2 * 2
    first = [float(r[headers.index("mean acc %")]) for r in rows if (r[0], r[1]) == ("mlp", "fa")]
    assert first == sorted(first, reverse=True)


def json_runs(folder):
    return [load_run(p.parent) for p in sorted(folder.rglob("summary.json"))]


def test_the_claim_sentences_follow_the_numbers():
    """A made-up study where dense helps fa clearly and bp not at all: the sentences say so, from the numbers."""
    rng = np.random.default_rng(7)
    base = synthetic_grid(rng, cells=6, points=2, seeds=3)
    results = []
    for arch, rule, shift in [("mlp", "bp", 0), ("dense-mlp", "bp", 0), ("mlp", "fa", -0.2), ("dense-mlp", "fa", 0)]:
        acc = base + shift if arch == "mlp" or rule == "fa" else base[:, :, ::-1]
        for c, p, s in np.ndindex(*acc.shape):
            results.append({"arch": arch, "rule": rule, "accuracy": float(np.clip(acc[c, p, s], 0, 1)), "seed": s,
                            "params": {"lr": c, "iterations": p, "seed": s}})  # fmt: skip
    sentences = claim_sentences(claim_tests(results, n_boot=500))
    bp, fa = sentences
    assert bp.startswith("**bp (the control)**") and "no difference can be told" in bp
    assert fa.startswith("**fa: supports the claim**") and "help fa more than they help bp" in fa


# ----------------------------------------------------------------------------------------------- presets


def test_the_medium_budget_is_mnist_in_steps_with_three_seeds_and_says_what_it_reduces():
    spec = load_spec(preset_spec("skip-connections", "medium"))
    assert spec["base"]["dataset"] == "mnist" and len(spec["seeds"]) >= 3 and spec["base"]["probe_every"] == 0
    for grid in spec["grid"]:
        (steps,), (points,) = grid["max_steps"], grid["eval_steps"]
        assert steps == max(points) and len(points) >= 3
    assert {p["arch"] for p in points_of(spec)} == {"mlp", "dense-mlp", "convnet", "dense-convnet"}
    assert {p["rule"] for p in points_of(spec)} == {"bp", "fa", "dtp"}
    assert "MEDIUM budget" in spec["notes"] and "reduce" in spec["notes"]
    assert "CANNOT TEST THE CLAIM" in preset_spec("skip-connections", "small")["notes"]


def test_the_paper_budget_keeps_the_published_grid():
    spec = preset_spec("skip-connections", "paper")
    by_activation = {g["arch_options.activation"][0]: g for g in spec["grid"] if "mlp" in g["arch"]}
    assert by_activation["sigmoid"]["lr"] == [0.1, 0.01, 0.001] and by_activation["relu"]["lr"] == [1e-3, 1e-4, 1e-5]
    assert by_activation["sigmoid"]["eval_steps"] == [[200_000, 400_000, 600_000, 800_000]]
    assert min(by_activation["relu"]["eval_steps"][0]) == 100_000 and by_activation["relu"]["max_steps"] == [1_000_000]
    assert by_activation["sigmoid"]["arch_options.depth"] == [3, 4, 5, 6, 7]


def test_the_layer_skipping_study_has_no_medium_budget():
    with pytest.raises(ConfigError, match="budgets small, paper"):
        preset_spec("layer-skipping-ep", "medium")
    assert json.dumps(preset_spec("skip-connections", "medium"))  # plain data: it goes into spec.yaml and the db


def test_the_report_warns_where_backprop_itself_does_not_train():
    def record(arch, depth, lr, accuracy):
        return {"arch": arch, "rule": "bp", "accuracy": accuracy, "seed": 0,
                "params": {"arch_options": {"depth": depth, "activation": "sigmoid"}, "lr": lr}}  # fmt: skip

    results = [record("mlp", 7, 0.1, 0.11), record("mlp", 7, 0.01, 0.19), record("mlp", 3, 0.1, 0.97)]
    assert untrained_by_backprop(results) == ["mlp depth=7 activation=sigmoid (best 19.0 %)"]
