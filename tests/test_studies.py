"""Studies: Optuna sweeps (resume, killed trials, divergence, shared PostgreSQL), sensitivity, presets, reports."""

import contextlib
import dataclasses
import glob
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bioplausible.cli import main
from bioplausible.config import TrainConfig
from bioplausible.data import Dataset, load_dataset
from bioplausible.engine import fit
from bioplausible.errors import ConfigError
from bioplausible.report.html import write_report
from bioplausible.runs import RunFolder
from bioplausible.studies import (
    available_spec,
    curve_stats,
    load_spec,
    plot_sensitivity,
    preset_spec,
    run_sweep,
    sensitivity_stats,
    trial_results,
)
from bioplausible.studies.sweep import check_points, open_study, points_of, trial_config

BASE = {
    "dataset": "synthetic",
    "epochs": 1,
    "arch": "mlp",
    "arch_options": {"depth": 1, "width": 8},
    "batch_size": 64,
    "probe_batch_size": 32,
}
# 2 rules x 2 lrs; lr 1e6 makes Adam's first steps explode, so half the grid diverges
WORKER = """
import sys
from bioplausible.studies import run_sweep
run_sweep({spec!r}, sys.argv[1], storage=sys.argv[2] or None)
"""
SPEC = {"name": "tiny", "base": BASE, "grid": {"rule": ["bp", "fa"], "lr": [0.05, 1e6]}}


def point(trial) -> tuple:
    params = trial.user_attrs["params"]
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def complete(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny grid run in two calls: two trials, then the rest; summary mtimes taken in between."""
    folder = tmp_path_factory.mktemp("study")
    first = len(complete(run_sweep(SPEC, folder, n_trials=2)))
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/summary.json")}
    lines = io.StringIO()
    with contextlib.redirect_stderr(lines):
        study = run_sweep(SPEC, folder)
    return folder, first, mtimes, study, lines.getvalue()


def test_a_resumed_sweep_reruns_no_finished_trial_and_holds_every_point_once(tiny_study):
    folder, first, mtimes, study, log = tiny_study
    assert len(mtimes) == 2 and first == 2
    # one line per trial of the second call, with its time and the study's progress (the first call's count too)
    assert re.search(r"trial 2: .* -> .* in runs/2, took \d+ s \[3 of 4 complete\]", log), log
    assert re.search(r"trial 3: .* -> .* in runs/3, took \d+ s \[4 of 4 complete\]", log), log
    for path, mtime in mtimes.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten: a finished trial ran again"
    done = complete(study)
    assert len(done) == len(study.trials) == 4
    assert sorted(point(t) for t in done) == sorted({point(t) for t in done})
    assert {(p["rule"], p["lr"]) for p in (t.user_attrs["params"] for t in done)} == {
        (r, lr) for r in ("bp", "fa") for lr in (0.05, 1e6)
    }
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["0", "1", "2", "3"]
    # a third call finds nothing left to do; a changed grid is refused rather than mixed in
    assert len(run_sweep(SPEC, folder).trials) == 4
    with pytest.raises(ConfigError, match="different search space"):
        run_sweep({**SPEC, "grid": {"rule": ["bp"], "lr": [0.05, 1e6]}}, folder)


def test_a_diverged_trial_is_a_result_at_chance_and_the_study_goes_on(tiny_study):
    _, _, _, study, _ = tiny_study
    results = {(r["rule"], r["params"]["lr"]): r for r in trial_results(study)}
    for rule in ("bp", "fa"):
        assert results[(rule, 1e6)]["status"] == "diverged"
        assert results[(rule, 1e6)]["accuracy"] == pytest.approx(0.25)  # 4 classes
        assert results[(rule, 0.05)]["status"] == "ok"
    assert results[("bp", 0.05)]["accuracy"] > 0.5


def test_the_report_of_a_study_is_one_self_contained_html_page(tiny_study):
    folder = tiny_study[0]
    page = write_report(folder).read_text()
    assert page.count('<img src="data:image/png;base64,') >= 3  # sensitivity, learning curves, probes
    assert "<table>" in page and "<th>rule</th>" in page and "within 1 pt of best" in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]
    md = (folder / "report.md").read_text()
    assert "![Hyperparameter sensitivity (sorted best to worst)](sensitivity.png)" in md and "| mlp" in md
    assert (folder / "sensitivity.png").stat().st_size > 5_000


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_left_running_by_a_killed_worker_is_run_again_and_a_failed_one_is_recorded(tmp_path):
    spec = {
        "base": BASE,
        "grid": [
            {"rule": ["bp"], "lr": [0.01, 0.05]},
            {"rule": ["fa"], "dataset": ["mnist"], "data_dir": [str(tmp_path / "missing")], "download": [False]},
        ],
    }
    run_sweep(spec, tmp_path, n_trials=1)
    # a worker that died mid-trial: its trial stays RUNNING in the database, its run folder half written
    study = open_study(load_spec(spec), tmp_path, None)
    killed = study.ask()
    study._storage.set_trial_user_attr(killed._trial_id, "worker", f"{socket.gethostname()}:{dead_pid()}")
    study = run_sweep(spec, tmp_path)
    states = {t.number: t.state for t in study.trials}
    assert states[killed.number] == TrialState.FAIL
    done = complete(study)
    assert sorted(point(t) for t in done) == sorted({point(t) for t in done})
    assert {t.user_attrs["params"]["lr"] for t in done} == {0.01, 0.05}
    # the run without its data failed, was recorded as FAIL with its error, and did not stop the study
    # (it is retried once by the next run of the study, so it fails once or twice here, as the grid's order has it)
    failed = [t for t in study.trials if t.state == TrialState.FAIL and t.number != killed.number]
    assert 1 <= len(failed) <= 2 and {t.user_attrs["params"]["rule"] for t in failed} == {"fa"}
    assert all("DataError" in t.user_attrs["error"] and "missing" in t.user_attrs["error"] for t in failed)
    assert (tmp_path / "runs" / str(killed.number) / "summary.json").exists()  # the retry used the killed folder


def test_a_sweep_killed_by_sigkill_continues_where_it_stopped(tmp_path):
    spec = {"name": "killed", "base": {**BASE, "epochs": 300, "probe_every": 0}, "grid": {"lr": [0.01, 0.02]}}
    worker = subprocess.Popen([sys.executable, "-c", WORKER.format(spec=spec), str(tmp_path), ""])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)  # kill it once one trial finished and the next has a checkpoint
            if (tmp_path / "study.db").exists() and len(list(tmp_path.glob("runs/*/checkpoint.pt"))) == 2:
                study = optuna.load_study(study_name="killed", storage=storage)
                if len(complete(study)) == 1:
                    break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finished = complete(optuna.load_study(study_name="killed", storage=storage))
    assert len(finished) == 1, "the worker finished everything before it could be killed"
    summary = next(tmp_path.glob("runs/*/summary.json"))
    mtime = summary.stat().st_mtime_ns
    study = run_sweep(spec, tmp_path)
    done = complete(study)
    assert len(done) == 2 and {t.user_attrs["params"]["lr"] for t in done} == {0.01, 0.02}
    assert summary.stat().st_mtime_ns == mtime  # the finished trial did not run again
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["0", "1"]  # the retry continued runs/1


def test_a_retried_trial_whose_checkpoint_is_gone_trains_again_from_the_start(tmp_path):
    from bioplausible.studies.sweep import Objective

    spec = {"name": "lost", "base": {**BASE, "epochs": 2, "probe_every": 0}, "grid": {"lr": [0.01]}}
    objective, out = Objective(spec, tmp_path), tmp_path / "runs" / "0"
    fit(trial_config(spec["base"], {"lr": 0.01, "epochs": 1}, out), quiet=True)  # one epoch of it, then killed
    (out / "checkpoint.pt").unlink()  # what a fresh checkout of committed run folders holds
    accuracy, status = objective.train({"lr": 0.01}, out)
    assert status == "ok" and len(RunFolder(out).read_metrics()) == 2


# The worker takes Ctrl-C as a terminal delivers it: a process started in the background by a non-interactive shell
# (nohup ... &, some CI runners) inherits SIGINT *ignored*, and Python then keeps ignoring it.
INTERRUPTIBLE = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from bioplausible.studies import run_sweep
try:
    run_sweep({spec!r}, sys.argv[1])
except KeyboardInterrupt as err:  # what the command line prints
    print(f"interrupted: {{err}}", file=sys.stderr)
    sys.exit(130)
"""


def test_a_sweep_interrupted_by_ctrl_c_says_so_in_one_line_and_reruns_the_trial(tmp_path):
    spec = {"name": "ctrl-c", "base": {**BASE, "epochs": 300, "probe_every": 0}, "grid": {"lr": [0.01, 0.02]}}
    worker = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE.format(spec=spec), str(tmp_path)],
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and worker.poll() is None:  # mid-trial: its first checkpoint exists
            time.sleep(0.05)
            if (tmp_path / "runs" / "0" / "checkpoint.pt").exists():
                break
    finally:
        worker.send_signal(signal.SIGINT)
        err = worker.communicate(timeout=1800)[1]
    assert worker.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted: run the same command again to continue"
    assert "Traceback" not in err and "--resume" not in err, err
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    [stopped] = optuna.load_study(study_name="ctrl-c", storage=storage).trials
    assert stopped.user_attrs["interrupted"] and stopped.state != TrialState.COMPLETE
    study = run_sweep(spec, tmp_path)
    done = complete(study)
    assert len(done) == 2 and sorted(t.user_attrs["params"]["lr"] for t in done) == [0.01, 0.02]
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert "0" in folders and folders == sorted(t.user_attrs["run"].split("/")[-1] for t in done)  # retry: runs/0
    assert not any(t.user_attrs["interrupted"] for t in done)
    count = len(study.trials)
    assert len(run_sweep(spec, tmp_path).trials) == count  # a third call finds nothing to do


def test_each_trial_trains_on_the_dataset_options_it_records(tmp_path):
    """A sweep loaded every trial's dataset without its dataset_options (synthetic's 256 default examples for
    n_train 96 and 160), while each config.json recorded the options asked for."""
    spec = {"base": {**BASE, "dataset_options": {"num_features": 12}}, "grid": {"dataset_options.n_train": [96, 160]}}
    run_sweep(spec, tmp_path)
    for run in sorted(tmp_path.glob("runs/*/config.json")):
        config = json.loads(run.read_text())
        source = config["data_source"]
        assert source["num_train"] == config["dataset_options"]["n_train"] and "12 features" in source["description"]
    assert len(list(tmp_path.glob("runs/*/config.json"))) == 2
    drawn = {"dataset_options.num_features": {"low": 5, "high": 40}}  # a random search over one too (it crashed)
    searched = {"base": BASE, "grid": {"rule": ["bp"]}, "random": {"n_trials": 2, "sampler": "random", "params": drawn}}
    run_sweep(searched, tmp_path / "random")
    configs = [json.loads(p.read_text()) for p in (tmp_path / "random").glob("runs/*/config.json")]
    assert len(configs) == 2
    for config in configs:
        drawn = config["dataset_options"]["num_features"]
        assert 5 <= drawn <= 40 and f"{drawn} features" in config["data_source"]["description"]
    with pytest.raises(
        ConfigError, match="dataset_options.widthh: no dataset of the study .*synthetic.* has an option"
    ):
        run_sweep(
            {**searched, "random": {**searched["random"], "params": {"dataset_options.widthh": {"choices": [1, 2]}}}},
            tmp_path / "x",
        )


def test_fit_refuses_a_dataset_loaded_with_other_options_than_its_config_names(tmp_path):
    config = TrainConfig(dataset="synthetic", dataset_options={"n_train": 96}, epochs=1, progress=False,
                         arch_options={"depth": 1, "width": 8}, out=str(tmp_path / "r"))  # fmt: skip
    other = r"loaded as 'synthetic' with n_train=256, but the config asks for n_train=96"
    with pytest.raises(ConfigError, match=other):
        fit(config, data=load_dataset("synthetic"))
    with pytest.raises(ConfigError, match=other):  # a copy keeps what it was loaded as
        fit(config, data=dataclasses.replace(load_dataset("synthetic")))
    train_part, _ = load_dataset("synthetic", n_train=96).split_validation(0.5, seed=0)
    with pytest.raises(ConfigError, match=r"holds 48 train examples, not the 96 it was loaded with"):
        fit(config, data=train_part)  # a subset passed the check and was recorded as the whole set
    with pytest.raises(ConfigError, match=r"loaded as 'digits', but the config asks for 'synthetic': load it"):
        fit(config, data=load_dataset("digits"))
    mine = load_dataset("synthetic", n_train=96)
    hand_built = Dataset("mine", mine.train_x, mine.train_y, mine.test_x, mine.test_y, 4)
    with pytest.raises(ConfigError, match=r"named 'mine' but the config names 'synthetic'.*register the dataset"):
        fit(config, data=hand_built)
    spelled_out = load_dataset("synthetic", n_train=96, num_features=20)  # 20: the default, given or not
    assert (fit(config, data=spelled_out, quiet=True) / "summary.json").exists()


def test_random_search_runs_n_trials_per_grid_point(tmp_path):
    spec = {
        "base": BASE,
        "grid": {"rule": ["bp", "fa"]},
        "random": {"n_trials": 2, "sampler": "random", "params": {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}},
    }
    study = run_sweep(spec, tmp_path)
    rules = sorted(t.user_attrs["params"]["rule"] for t in complete(study))
    assert rules == ["bp", "bp", "fa", "fa"]
    assert all(1e-3 <= t.params["lr"] <= 1e-1 for t in study.trials)


def test_a_seeded_random_search_draws_the_same_configurations_in_any_study(tmp_path):
    """Trial k's values depend on (seed, k) alone: a rerun elsewhere draws them again, another seed does not."""
    params = {
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "arch_options.depth": {"low": 1, "high": 4},
        "rule_options.feedback_scale": {"choices": [0.5, 1.0, 2.0]},
    }

    def drawn(folder: str, seed: int) -> list[dict]:
        spec = {"base": {**BASE, "epochs": 1}, "grid": {"rule": ["fa"]},
                "random": {"n_trials": 3, "sampler": "random", "seed": seed, "params": params}}  # fmt: skip
        study = run_sweep(spec, tmp_path / folder)
        return [t.user_attrs["params"] for t in sorted(study.trials, key=lambda t: t.number)]

    first, again, other = drawn("a", 7), drawn("b", 7), drawn("c", 8)
    assert first == again and first != other
    assert len({p["lr"] for p in first}) == 3  # distinct draws per trial, not one value repeated
    assert all(1e-4 <= p["lr"] <= 1e-1 and p["arch_options.depth"] in (1, 2, 3, 4) for p in first)


def test_a_random_rule_option_reaches_only_the_rules_that_have_it(tmp_path):
    space = {"rule_options.inverse_lr": {"low": 1e-4, "high": 1e-2}}
    spec = {"base": {**BASE, "epochs": 1}, "grid": {"rule": ["bp", "dtp"]},
            "random": {"n_trials": 1, "sampler": "random", "params": space}}  # fmt: skip
    study = run_sweep(spec, tmp_path)
    params = {t.user_attrs["params"]["rule"]: t.user_attrs["params"] for t in complete(study)}
    assert "rule_options.inverse_lr" not in params["bp"]  # bp has no inverses: dropped, not refused
    assert 1e-4 <= params["dtp"]["rule_options.inverse_lr"] <= 1e-2


def test_a_folder_of_seeds_gets_one_probe_panel_per_rule_its_best_run(tmp_path, monkeypatch):
    import bioplausible.report.compose as compose
    from bioplausible.config import TrainConfig
    from bioplausible.engine import fit

    for name, rule, seed in [("fa-0", "fa", 0), ("fa-1", "fa", 1), ("bp-0", "bp", 0)]:
        config = TrainConfig(**{**BASE, "rule": rule, "seed": seed, "epochs": 1, "out": str(tmp_path / name)})
        fit(config, quiet=True)
    panels: list[list[str]] = []

    def record(runs, spec, path):
        panels.append(sorted(r.path.name for r in runs))

    monkeypatch.setattr(compose, "plot_probe", record)
    write_report(tmp_path)
    assert panels and all(len(p) == 2 and "bp-0" in p for p in panels)  # bp and the better fa seed, not both


def test_sensitivity_stats_on_hand_made_numbers(tmp_path):
    stats = curve_stats([0.95, 0.90, 0.945, 0.50])
    assert stats["best"] == 0.95 and stats["median"] == pytest.approx(0.9225)
    assert stats["within_1pt"] == 0.5  # 0.95 and 0.945
    assert stats["auc"] == pytest.approx((0.95 + 0.90 + 0.945 + 0.50) / 4)
    results = [
        {"arch": "mlp", "rule": "fa", "accuracy": a, "params": {"lr": i}} for i, a in enumerate([0.9, 0.5, 0.2])
    ] + [
        # two seeds of one configuration count once, at their mean
        {"arch": "dense-mlp", "rule": "fa", "accuracy": a, "params": {"lr": 1, "seed": s}}
        for s, a in enumerate([0.8, 0.9])
    ]
    by_pair = sensitivity_stats(results)
    assert by_pair[("mlp", "fa")]["n"] == 3 and by_pair[("dense-mlp", "fa")]["n"] == 1
    assert by_pair[("dense-mlp", "fa")]["best"] == pytest.approx(0.85)
    assert by_pair[("mlp", "fa")]["within_1pt"] == pytest.approx(1 / 3)
    assert plot_sensitivity(results, tmp_path / "s.png").stat().st_size > 5_000
    # Xiao et al.'s switch (the last layer on backprop) is another method, not a point of fa's curve
    switched = [{**r, "params": {**r["params"], "rule_options.bp_layers": ["last"]}} for r in results[:2]]
    by_pair = sensitivity_stats(results[:3] + switched)
    assert by_pair[("mlp", "fa")]["n"] == 3 and by_pair[("mlp", "fa (last layer bp)")]["n"] == 2
    from bioplausible.analysis.curves import method_of  # as a run folder's resolved config holds it, too

    assert method_of({"rule": "fa", "params": {"rule_options": {"bp_layers": ["last"]}}}) == "fa (last layer bp)"
    assert method_of({"rule": "fa", "params": {"rule_options": {"bp_layers": []}}}) == "fa"


def test_presets_exist_at_both_budgets_and_small_says_what_it_reduced():
    for name in (
        "skip-connections",
        "bartunov2018",
        "sign-symmetry",
        "layer-skipping-ep",
        "ep-open-questions",
        "conv-ep",
    ):
        small, paper = preset_spec(name, "small"), preset_spec(name, "paper")
        load_spec(small), load_spec(paper)
        assert "SMALL budget" in small["notes"] and "PAPER budget" in paper["notes"]
    skip = preset_spec("layer-skipping-ep")
    ps = [p["arch_options.p"] for p in points_of(skip) if p["arch_options.topology"] == "skip"]
    assert ps == [0.004, 0.016, 0.04, 0.1]
    archs = {p["arch"] for p in points_of(preset_spec("skip-connections"))}
    assert archs == {"mlp", "dense-mlp", "convnet", "dense-convnet"}


@pytest.mark.parametrize(
    "name", ["skip-connections", "bartunov2018", "sign-symmetry", "layer-skipping-ep", "ep-open-questions", "conv-ep"]
)
def test_every_budget_of_a_preset_loads_and_expands_to_valid_configs(name):
    """Dry: every grid point of every budget is a config whose rule, architecture and options resolve."""
    from bioplausible.build import resolve_config
    from bioplausible.studies.presets import budgets_of
    from bioplausible.studies.sweep import applicable, trial_config

    for budget in budgets_of(name):
        spec = load_spec(preset_spec(name, budget))
        assert f"{budget.upper()} budget" in spec["notes"]
        for params in points_of(spec):
            resolve_config(trial_config(spec["base"], applicable(params, spec["base"]), Path("unused")))


@pytest.mark.parametrize(
    ("base", "point", "drawn", "kept"),
    [  # one random space serves trials that do not read all of it: the drawn option is dropped, not refused
        ({"arch": "energy-net"}, {"rule": "bp"}, {"arch_options.nudged_steps": 2}, False),
        ({"arch": "energy-net"}, {"rule": "ep"}, {"arch_options.nudged_steps": 2}, True),
        ({"arch": "energy-net", "rule": "ep"}, {"arch_options.settle": "euler"}, {"arch_options.omega": 1.2}, False),
        ({"arch": "energy-net", "rule": "ep"}, {"arch_options.settle": "block"}, {"arch_options.omega": 1.2}, True),
        ({}, {"optimizer": "sgd"}, {"adam_beta2": 0.99}, False),
        ({}, {"optimizer": "adam"}, {"adam_beta2": 0.99}, True),
        ({}, {"optimizer": "adam"}, {"momentum": 0.9}, False),
        # dropping one can leave another unread: bp drops nudged_settle, then epsilon (block settling alone)
        ({"arch": "energy-net"}, {"rule": "bp"}, {"arch_options.nudged_settle": "euler", "arch_options.epsilon": 0.3},
         False),
        ({"arch": "energy-net"}, {"rule": "ep"}, {"arch_options.nudged_settle": "euler", "arch_options.epsilon": 0.3},
         True),
    ],
)  # fmt: skip
def test_a_search_drops_the_drawn_options_a_trial_would_not_read(base, point, drawn, kept):
    from bioplausible.build import resolve_config
    from bioplausible.studies.sweep import applicable

    base = {"dataset": "synthetic", **base}
    params = applicable({**point, **drawn}, base)
    assert params == ({**point, **drawn} if kept else point)
    resolve_config(trial_config(base, params, Path("unused")))  # the trial it leaves resolves


@pytest.mark.parametrize(("base", "search", "read"), [
    ({"optimizer": "sgd"}, {"adam_eps": {"choices": [1e-6, 1e-8]}}, False),  # SGD everywhere: drawn for nothing
    ({"optimizer": "sgd"}, {"adam_eps": {"choices": [1e-6]}, "optimizer": {"choices": ["sgd", "adam"]}}, True),
    ({}, {"adam_eps": {"choices": [1e-6]}}, True),  # Adam is the default
])  # fmt: skip
def test_a_searched_parameter_no_trial_reads_is_refused(base, search, read):
    spec = {"name": "t", "base": {"dataset": "synthetic", **base}, "random": {"n_trials": 2, "params": search}}
    if read:
        check_points(load_spec(spec))
    else:
        with pytest.raises(ConfigError, match="searched parameter adam_eps is read by no trial"):
            check_points(load_spec(spec))


def test_a_base_option_a_grid_point_would_not_read_is_refused_by_name():
    """The base is the study's own choice, not a draw: a base nudged_steps with a bp grid point is refused."""
    spec = {
        "name": "t", "base": {"dataset": "synthetic", "arch": "energy-net", "arch_options": {"nudged_steps": 5}},
        "grid": [{"rule": ["bp", "ep"]}],
    }  # fmt: skip
    with pytest.raises(ConfigError, match="point rule=bp: --nudged-steps sets the nudged phase"):
        check_points(load_spec(spec))


def test_the_cifar_presets_follow_the_published_recipes():
    signs = {budget: load_spec(preset_spec("sign-symmetry", budget)) for budget in ("medium", "paper")}
    for spec in signs.values():
        points = points_of(spec)
        base = spec["base"]
        assert base["dataset"] == "cifar10" and base["optimizer"] == "sgd" and base["momentum"] == 0.9
        assert base["weight_decay"] == 1e-4 and base["batch_size"] == 128 and base["init"] == "xavier"
        rules = {p["rule"] for p in points}
        assert rules == {"bp", "usf", "frsf", "brsf", "fa", "dfa", "kp"}
        for rule in rules - {"bp"}:  # Xiao et al.'s switch: the last layer on backprop, or not
            assert {str(p["rule_options.bp_layers"]) for p in points if p["rule"] == rule} == {"['last']", "[]"}
        assert {p["lr"] for p in points if p["rule"] == "dfa"} == {0.001}
        assert {p["lr"] for p in points if p["rule"] != "dfa"} == {0.1}
    assert signs["paper"]["base"]["epochs"] == 250 and signs["paper"]["base"]["lr_milestones"] == [100, 150, 200]
    assert {p.get("arch") for p in points_of(signs["paper"])} == {"resnet20", "resnet18"}
    assert signs["medium"]["base"]["lr_milestones"] == [2, 4, 5] and signs["medium"]["base"]["channels_last"]
    bartunov = {budget: load_spec(preset_spec("bartunov2018", budget)) for budget in ("medium", "paper")}
    nets = {(p["dataset"], p["arch"], p.get("arch_options.depth"), p.get("arch_options.width"))
            for p in points_of(bartunov["paper"])}  # fmt: skip
    assert nets == {("mnist", "mlp", 5, 256), ("cifar10", "mlp", 3, 1024), ("mnist", "lc-net", None, None),
                    ("cifar10", "lc-net", None, None)}  # fmt: skip
    medium = {(p["dataset"], p["rule"], p.get("rule_options.schedule")): p for p in points_of(bartunov["medium"])}
    assert len(medium) == 2 * 9 and medium[("cifar10", "dfa", None)]["lr"] == 1.649e-3
    assert medium[("cifar10", "aosdtp", "parallel")]["rule_options.inverse_lr"] == 9.572e-3  # sdtp's, borrowed
    assert "MNIST hyperparameters" in bartunov["medium"]["notes"] or "MNIST values" in bartunov["medium"]["notes"]


def test_a_preset_with_an_unknown_rule_skips_it_with_a_message():
    spec = preset_spec("skip-connections")
    spec["grid"][0]["rule"] = ["bp", "not-a-rule"]
    spec["grid"][1]["arch"] = ["no-such-net"]
    kept, messages = available_spec(spec)
    assert any("'not-a-rule' is not yet available" in m for m in messages)
    assert any("'no-such-net' is not yet available" in m for m in messages)
    assert len(kept["grid"]) == 1 and kept["grid"][0]["rule"] == ["bp"]
    spec["grid"] = spec["grid"][1:]
    assert available_spec(spec)[0] is None


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("- just\n- a list\n", "must be a mapping"),
        ("base: {dataset: [unclosed\n", "not valid YAML"),
        ("base: {epochs: 1}\ngrid: {no_such_field: [1]}\n", "unknown field 'no_such_field'"),
        ("base: {no_such_field: 1}\ngrid: {lr: [0.1]}\n", "unknown config field(s) no_such_field"),
        ("base: {epochs: 1}\ngrid: {lr: []}\n", "non-empty list"),
        ("base: {epochs: 1}\ngrid: []\n", "search space is empty"),
        ("base: {epochs: 1}\n", "no search space"),
        ("grids: {lr: [1]}\n", "unknown study spec key(s) grids"),
        ("grid: {lr: [1]}\nrandom: {n_trials: 0}\n", "n_trials must be a positive integer"),
    ],
)
def test_a_bad_spec_gets_an_error_naming_the_problem(tmp_path, spec, problem):
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    with pytest.raises(ConfigError, match=None) as err:
        load_spec(path)
    assert problem in str(err.value)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"grid": {"rule": ["fa", "usf"], "rule_options.feedbak_scale": [1.0]}}, "no option feedbak_scale"),
        ({"grid": {"arch_options.widht": [8, 16]}}, "no option widht"),
        ({"grid": {"rule": ["bp", "fa"], "rule_options.feedback_scale": [2.0]}}, "rule 'bp' has no option"),
        ({"grid": {"lr": [0.1, -1]}}, "lr=-1"),
        (
            {"random": {"n_trials": 2, "params": {"rule_options.feedbak_scale": {"low": 0.1, "high": 10.0}}}},
            "no rule of the study (fa) has an option 'feedbak_scale'",
        ),
        ({"random": {"n_trials": 2, "params": {"lr": {"low": -1.0, "high": -0.5}}}}, "lr must be > 0"),
        ({"random": {"n_trials": 1, "params": {"rule_options.nudging": {"choices": ["sideways"]}}}}, "nudging"),
    ],
)
def test_every_configuration_of_a_study_is_checked_before_any_trial_runs(tmp_path, spec, problem):
    """A misspelt option or a value out of range is one error naming it, before any trial, in a grid and in a
    random search alike (there at the search's bounds and choices)."""
    base = {**BASE, "rule": "ep", "arch": "energy-net"} if "nudging" in str(spec) else {**BASE, "rule": "fa"}
    with pytest.raises(ConfigError) as err:
        run_sweep({"base": base, **spec}, tmp_path)
    assert problem in str(err.value), err.value
    assert not (tmp_path / "runs").exists()


def test_a_yaml_spec_reads_1e_minus_3_as_a_number(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("base: {epochs: 1}\ngrid: {lr: [1e-3, 3e-2, 0.1], rule_options.beta: [1E+0]}\nseeds: [0, 1]\n")
    spec = load_spec(path)
    assert spec["grid"]["lr"] == [1e-3, 3e-2, 0.1] and spec["grid"]["rule_options.beta"] == [1.0]
    assert len(points_of(spec)) == 3 * 2


def test_cli_sweep_and_report(tmp_path, capsys):
    spec = {**SPEC, "grid": {"rule": ["bp"], "lr": [0.05]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "s"), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 complete" in out and "| mlp" in out
    assert main(["report", str(tmp_path / "s")]) == 0
    assert "data:image/png;base64," in (tmp_path / "s" / "report.html").read_text()
    assert main(["sweep", "no-such-preset", "--out", str(tmp_path / "x")]) == 2
    assert "neither a YAML file nor a preset" in capsys.readouterr().err
    switched = {**SPEC, "base": {**BASE, "rule_options": {"bp_layers": ["last"]}}, "grid": {"rule": ["fa"]}}
    (tmp_path / "switched.yaml").write_text(yaml.safe_dump(switched))  # the switch in the base names the method too
    assert main(["sweep", str(tmp_path / "switched.yaml"), "--out", str(tmp_path / "w")]) == 0
    assert "| fa (last layer bp) |" in capsys.readouterr().out


# ----------------------------------------------------------------------------------- shared PostgreSQL study

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def postgres_skip_reason() -> str | None:
    if not PG_BIN:
        return "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb, Debian's postgresql) are not installed"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "the psycopg2 driver SQLAlchemy needs for postgresql:// is not installed (pip install psycopg2-binary)"
    if os.geteuid() == 0 and not (shutil.which("runuser") and user_exists("postgres")):
        return "running as root, which PostgreSQL refuses, and there is no postgres user to run it as (runuser)"
    return None


def user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on loopback; yields its SQLAlchemy URL."""
    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    bin_dir = Path(PG_BIN[-1]).parent
    tmp_path = Path(tempfile.mkdtemp(prefix="bioplausible-pg-"))  # outside pytest's root-only tmp tree
    data, port = tmp_path / "pg", free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's postgres user
        shutil.chown(tmp_path, user="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "study", "--auth=trust"], check=True,
                   capture_output=True)  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={tmp_path}"
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                    str(tmp_path / "pg.log"), "start"], check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([*prefix, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "study",
                        "sweeps"], check=True, capture_output=True)  # fmt: skip
        yield f"postgresql+psycopg2://study@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study_without_duplicates(backend, request, tmp_path):
    """Two processes against one database: each grid point is trained exactly once (SQLite here stands in for a
    shared file; PostgreSQL is the many-machines case and needs its server binaries and the psycopg2 driver)."""
    storage = request.getfixturevalue("postgres") if backend == "postgresql" else f"sqlite:///{tmp_path}/shared.db"
    spec = {"name": "shared", "base": BASE, "grid": {"rule": ["bp", "fa"], "lr": [0.01, 0.02, 0.05]}}
    folder = tmp_path / "study"
    code = WORKER.format(spec=spec)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(folder), storage], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=1800)[1] for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
    study = optuna.load_study(study_name="shared", storage=storage)
    done = complete(study)
    assert len(done) == 6 and len({point(t) for t in done}) == 6, [point(t) for t in done]
    assert len({t.user_attrs["run"] for t in done}) == 6


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_queued_retry_claimed_by_a_live_worker_is_not_taken_for_dead(tmp_path):
    """A retry copies the trial it stands for; had it kept that attempt's worker (a process gone since), another
    worker starting while a live one has just claimed the retry would mark it FAIL and queue it again."""
    from bioplausible.studies.sweep import requeue_dead_trials

    spec = load_spec({"name": "claimed", "base": BASE, "grid": {"rule": ["bp", "fa", "dfa"]}})
    study = open_study(spec, tmp_path, None)
    first = study.ask()
    study._storage.set_trial_user_attr(first._trial_id, "worker", f"{socket.gethostname()}:{dead_pid()}")
    study._storage.set_trial_user_attr(first._trial_id, "error", "DataError: no data")
    study.tell(first, state=TrialState.FAIL)
    assert requeue_dead_trials(study) == [first.number]
    claimed = study.ask()  # what a live worker does first; it records itself only once its objective starts
    assert (
        claimed.number == first.number + 1 and "worker" not in claimed.user_attrs and "error" not in claimed.user_attrs
    )
    assert requeue_dead_trials(study) == []  # the second worker
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.RUNNING]


def test_two_workers_starting_together_retry_a_failed_trial_once(tmp_path):
    storage = f"sqlite:///{tmp_path}/shared.db"
    missing = {"dataset": ["mnist"], "data_dir": [str(tmp_path / "missing")], "download": [False]}
    spec = {"name": "retry", "base": BASE, "grid": [{"rule": ["bp"]}, {"rule": ["fa"], **missing}]}
    folder = tmp_path / "study"
    run_sweep(spec, folder, storage=storage)  # bp trains, fa fails
    code = WORKER.format(spec=spec)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(folder), storage], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=1800)[1] for w in workers]
    trials = optuna.load_study(study_name="retry", storage=storage).trials
    # (a race: it shows only when both workers requeue before either retry has run, as it did 2 of 2 times without
    # the lock on a loaded machine; on an idle one the window can close first)
    # every attempt is retried at most once: a worker starting after the other's retry has failed may retry that
    # retry (each start of the study retries what failed), but no two retries may stand for the same attempt
    retried = [t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")]
    assert retried and len(retried) == len(set(retried)), logs


def energy_run(topology, p=0.1, accuracy=0.5, scale=None, lr=0.015, norms=None, path="x", depth=5, a=0.168,
               removed=0, curve=(0.4, 0.5)):  # fmt: skip
    from bioplausible.analysis.runs import make_run

    arch = {"hidden_sizes": [100] * depth, "topology": topology, "p": p, "a": a}
    rule = {**({"layer_lr_scale": scale} if scale else {}), **({"remove_skip_after": removed} if removed else {})}
    config = {"dataset": "mnist", "arch": "energy-net", "rule": "ep", "lr": lr, "epochs": 10, "arch_options": arch,
              "rule_options": rule}  # fmt: skip
    metrics = [{"epoch": e, "test/accuracy": acc, **{f"probe/ep_update_norm/{k}": v for k, v in (norms or {}).items()}}
               for e, acc in enumerate(curve, 1)]  # fmt: skip
    summary = {"test_accuracy": accuracy, "best_test_accuracy": max(accuracy, *curve)}
    return make_run(path, config, summary, metrics)


def test_energy_runs_are_told_apart_by_topology_and_per_layer_rates():
    """EP runs share arch and rule: the labels the declarations give (and where runs of one label differ in their
    architecture's options, those options) tell them apart; the report keeps the best of each, and Gammell's
    number sits beside the matching configuration only."""
    from bioplausible.analysis.runs import distinguish
    from bioplausible.papers import published_for
    from bioplausible.report.html import representative_runs

    layered, skip = energy_run("layered", accuracy=0.5), energy_run("skip", 0.04, 0.8)
    per_layer = energy_run("layered", accuracy=0.6, scale=[1, 0.25], lr=0.128)
    runs = [layered, skip, per_layer, energy_run("skip", 0.04, 0.7)]
    distinguish(runs)
    assert skip.arch_label != layered.arch_label and "p=0.04" in skip.arch_label
    assert per_layer.rule_label == "ep (per-layer lr)" and layered.rule_label == "ep"
    kept = representative_runs(runs)
    assert len(kept) == 3 and {r.summary["test_accuracy"] for r in kept} == {0.5, 0.8, 0.6}
    assert published_for(layered.config).test_error == 31.1 and published_for(skip.config).test_error == 10.3
    assert published_for(per_layer.config) is None and published_for(energy_run("skip", 0.1).config) is None


def test_layer_skipping_figures_plot_error_against_p_and_the_update_profile(tmp_path):
    """The p-sweep figure (declared by the energy net) needs skip nets at two p or more; the update profile
    (declared by EP) reads the adjacent pairs only, from the input up, scaled by each run's lr."""
    from bioplausible.archs.energy import EnergyNet
    from bioplausible.archs.energy_figures import p_sweep
    from bioplausible.rules.ep import EquilibriumPropagation
    from bioplausible.rules.ep_figures import _profile, update_profile

    assert p_sweep in EnergyNet.figures and update_profile in EquilibriumPropagation.figures
    layered = energy_run("layered", 0.0, 0.5, norms={"0-1": 0.01, "1-2": 0.1})
    skips = [energy_run("skip", 0.016, 0.8, norms={"0-1": 0.05, "1-2": 0.1, "0-2": 9.0}),
             energy_run("skip", 0.04, 0.9, norms={"0-1": 0.1})]  # fmt: skip
    assert p_sweep([layered, skips[0]], tmp_path) == []
    ((title, path),) = p_sweep([layered, *skips], tmp_path)
    assert "rewiring probability p" in title and path.stat().st_size > 10_000
    assert _profile(skips[0]) == pytest.approx({"0-1": 0.015 * 0.05, "1-2": 0.015 * 0.1})  # "0-2" skips a layer
    ((_, path),) = update_profile([layered, *skips], tmp_path)
    assert path.stat().st_size > 10_000
    assert update_profile([energy_run("layered")], tmp_path) == []


def test_the_open_questions_study_asks_depth_removal_and_scale_on_gammells_protocol():
    from bioplausible.studies.presets import budgets_of

    assert budgets_of("ep-open-questions") == ("small", "medium", "paper")
    spec = preset_spec("ep-open-questions", "medium")
    points = points_of(spec)
    depths = {(p["arch_options.topology"], len(p["arch_options.hidden_sizes"])) for p in points}
    assert depths == {(t, d) for t in ("layered", "skip") for d in (3, 5, 8)}
    assert [p["rule_options.remove_skip_after"] for p in points if "rule_options.remove_skip_after" in p] == [3]
    assert sorted(p.get("arch_options.a", 0.168) for p in points if len(p["arch_options.hidden_sizes"]) == 5
                  and p["arch_options.topology"] == "skip" and "rule_options.remove_skip_after" not in p) == [
        0.042, 0.168, 0.672]  # fmt: skip
    base = spec["base"]
    assert base["lr"] == 0.015 and base["rule_options"]["nudging"] == "random-sign" and base["dataset"] == "mnist"
    assert preset_spec("ep-open-questions", "paper")["base"]["epochs"] == 100
    from bioplausible.papers import published_for

    gammell = {
        "dataset": "mnist",
        "arch": "energy-net",
        "rule": "ep",
        "lr": 0.015,
        "epochs": 100,
        "arch_options": {"hidden_sizes": [100] * 5, "topology": "skip", "p": 0.1, "a": 0.168},
        "rule_options": {"remove_skip_after": 0},
    }  # fmt: skip (a resolved config holds every option)
    assert published_for(gammell).test_error == 5.24
    other_scale = {**gammell, "arch_options": {**gammell["arch_options"], "a": 0.042}}
    assert published_for(other_scale, other_epochs=True) is None  # their 5.24 % is for a = 0.168 only
    removed = {**gammell, "rule_options": {"remove_skip_after": 50}}
    assert published_for(removed, other_epochs=True) is None  # nor for a net whose skip connections went


def test_the_conv_ep_study_contrasts_the_nudgings_on_laborieuxs_recipe():
    """Paper budget: their CIFAR-10 net and recipe, the three estimators, and the published number beside the two
    runs it belongs to; medium: MNIST symmetric + CE (the 1.5 % bar) and the three on CIFAR-10."""
    from bioplausible.build import resolve_config
    from bioplausible.papers import published_for
    from bioplausible.studies.sweep import applicable, trial_config

    paper = load_spec(preset_spec("conv-ep", "paper"))
    base = paper["base"]
    assert base["arch_options"]["conv_channels"] == [128, 256, 512, 512] and base["epochs"] == 120
    assert base["lr"] == 0.25 and base["rule_options"]["layer_lr_scale"] == pytest.approx([1, 0.6, 0.4, 0.32, 0.2])
    published = {}
    for params in points_of(paper):
        config = resolve_config(trial_config(base, applicable(params, base), Path("unused")))
        entry = published_for(dataclasses.asdict(config))
        published[(config.rule_options["nudging"], config.rule_options["cost"])] = entry and entry.test_error
    assert published == {("one-sided", "mse"): 86.0, ("symmetric", "mse"): None, ("symmetric", "ce"): 11.7}
    medium = points_of(load_spec(preset_spec("conv-ep", "medium")))
    assert [(p["dataset"], p["rule_options.nudging"], p["rule_options.cost"]) for p in medium] == [
        ("mnist", "symmetric", "ce"), ("cifar10", "one-sided", "mse"), ("cifar10", "symmetric", "mse"),
        ("cifar10", "symmetric", "ce")]  # fmt: skip
    small_net = {"dataset": "cifar10", "arch": "conv-energy-net", "rule": "ep",
                 "arch_options": {"conv_channels": [32, 64]}, "rule_options": {"nudging": "one-sided"}}  # fmt: skip
    assert published_for(small_net) is None  # not their net: their number is not printed beside it
    short = dataclasses.asdict(resolve_config(trial_config(base, {**points_of(paper)[0], "epochs": 1}, Path("x"))))
    assert published_for(short) is None  # their net for 1 epoch: only with the number of epochs said
    assert "after 120 epochs" in published_for(short, other_epochs=True).source


def test_the_open_questions_figures_draw_depth_removal_and_scale(tmp_path):
    """Each figure appears only where the runs hold its question; the depth figure's ratio is the first adjacent
    pair's update norm over the last's (the lr cancels)."""
    from bioplausible.archs.energy import EnergyNet
    from bioplausible.archs.energy_figures import a_sweep, depth_sweep, input_output_ratio, skip_removal

    assert {depth_sweep, skip_removal, a_sweep} <= set(EnergyNet.figures)
    norms3 = {"0-1": 0.01, "1-2": 0.1, "3-4": 1.0}
    norms5 = {"0-1": 1e-3, "5-6": 1.0}
    runs = [energy_run("layered", depth=3, norms=norms3), energy_run("layered", depth=5, norms=norms5),
            energy_run("skip", depth=3, norms=norms3), energy_run("skip", depth=5, norms=norms5)]  # fmt: skip
    assert input_output_ratio(runs[0]) == pytest.approx(0.01) and input_output_ratio(runs[1]) == pytest.approx(1e-3)
    assert skip_removal(runs, tmp_path) == [] and a_sweep(runs, tmp_path) == []
    assert depth_sweep(runs[:1] + runs[2:3], tmp_path) == []  # one depth per topology: no sweep
    ((title, path),) = depth_sweep(runs, tmp_path)
    assert "Depth" in title and path.stat().st_size > 10_000
    removed = energy_run("skip", removed=1, curve=(0.6, 0.3))
    ((title, path),) = skip_removal([*runs, removed], tmp_path)
    assert "Removing" in title and path.stat().st_size > 10_000
    assert depth_sweep([removed, runs[3]], tmp_path) == []  # the removed net is not a point of the depth sweep
    scales = [energy_run("skip", a=a) for a in (0.042, 0.168, 0.672)]
    ((title, path),) = a_sweep([*scales, removed], tmp_path)
    assert "scale a" in title and path.stat().st_size > 10_000


def test_the_results_table_tells_runs_of_one_label_apart_by_what_differs():
    from bioplausible.report import results_table

    def run(name: str, lr: float, seed: int, **rule_options) -> dict:
        config = {"rule": "sdtp", "arch": "mlp", "dataset": "mnist", "lr": lr, "seed": seed, "threads": 1,
                  "out": f"x/{name}", "rule_options": {"schedule": "alternating", **rule_options}}  # fmt: skip
        summary = {"epochs": 3, "best_test_accuracy": 0.9, "test_accuracy": 0.8, "status": "ok"}
        return {"path": f"x/{name}", "config": config, "summary": summary}

    table = results_table([run("a", 1e-3, 0), run("b", 1e-3, 1, noise=0.2), run("c", 3e-4, 0)])
    lines = table.splitlines()
    assert "| run" in lines[0] and "settings" in lines[0]
    assert "lr=0.001 noise=0.1 seed=0" in lines[2]  # options resolved: sdtp's default noise
    assert "lr=0.001 noise=0.2 seed=1" in lines[3]
    assert "threads" not in table and "out=" not in table  # how a run was executed is not a setting
    single = results_table([run("a", 1e-3, 0)])
    assert "settings" not in single.splitlines()[0]


def test_a_sweep_with_a_failed_trial_exits_non_zero(tmp_path, capsys):
    spec = {"base": {**BASE, "dataset": "mnist", "data_dir": str(tmp_path / "missing"), "download": False}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({**spec, "grid": {"lr": [0.01]}}))
    code = main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "study"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "trial 0: lr=0.01 -> fail: DataError" in err and "trial(s) 0 (runs/0) failed" in err, err
    assert "Traceback" not in err
    # the same command again retries the failed trial (the cause may be fixed) and says again why it failed
    code = main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "study"), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "trial 1 failed: DataError" in err and "trial(s) 1 (runs/0) failed" in err, err
    assert "trial 0 failed" not in err  # the retry stands for it


def test_a_failed_trial_whose_cause_is_fixed_completes_on_the_next_run(tmp_path, capsys, monkeypatch):
    from test_data_imagefolder import write_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    study_dir, data = tmp_path / "study", tmp_path / "images"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"base": {**BASE, "dataset": "imagefolder"},
                                                        "grid": {"lr": [0.01]}}))  # fmt: skip
    sweep = ["sweep", str(tmp_path / "spec.yaml"), "--out", str(study_dir), "--threads", "1", "--data-dir", str(data)]
    assert main(sweep) == 1
    write_folder(data)  # the images the first run lacked
    assert main(sweep) == 0, capsys.readouterr().err
    study = open_study(load_spec(yaml.safe_load((study_dir / "spec.yaml").read_text())), study_dir, None)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert (study_dir / "runs" / "0" / "summary.json").exists()  # the retry trained in the failed trial's folder


def test_a_study_folder_takes_one_study_with_one_set_of_settings(tmp_path, capsys):
    """Another study in the folder, or the same one continued with other trained settings (--epochs), is refused
    before anything is written; execution settings (threads, data dir) may differ between workers; the report says
    which settings the command line changed."""
    spec = {"name": "one", "base": {**BASE, "epochs": 1}, "grid": {"lr": [0.01, 0.02]}}
    run_sweep(spec, tmp_path / "s", n_trials=1)
    before = (tmp_path / "s" / "spec.yaml").read_text()
    with pytest.raises(ConfigError, match="holds the study 'one'"):
        run_sweep({**spec, "name": "two"}, tmp_path / "s", n_trials=1)
    with pytest.raises(ConfigError, match="epochs: 1 -> 2"):
        run_sweep({**spec, "base": {**spec["base"], "epochs": 2}}, tmp_path / "s", n_trials=1)
    assert (tmp_path / "s" / "spec.yaml").read_text() == before
    run_sweep({**spec, "base": {**spec["base"], "threads": 1}}, tmp_path / "s", n_trials=1)  # the second point
    assert len(list((tmp_path / "s" / "runs").iterdir())) == 2
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "o"), "--epochs", "2"]) == 0
    assert main(["report", str(tmp_path / "o")]) == 0
    assert "**Run with epochs = 2 from the command line**" in (tmp_path / "o" / "report.md").read_text()
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "o"), "--epochs", "3"]) == 2
    assert "epochs: 2 -> 3" in capsys.readouterr().err


def test_runs_of_one_rule_label_are_told_apart_by_the_rule_options_that_differ():
    """conv-ep's one-sided and symmetric runs shared the label "ep", so the report kept only the best of them."""
    from bioplausible.analysis.runs import distinguish, make_run
    from bioplausible.report.html import representative_runs

    def run(nudging, cost, accuracy):
        config = {"dataset": "cifar10", "arch": "conv-energy-net", "rule": "ep", "arch_options": {},
                  "rule_options": {"nudging": nudging, "cost": cost, "beta": 0.5}}  # fmt: skip
        return make_run(f"x/{nudging}-{cost}", config, {"test_accuracy": accuracy}, [{"epoch": 1}])

    runs = [run("one-sided", "mse", 0.2), run("symmetric", "mse", 0.4), run("symmetric", "ce", 0.5)]
    distinguish(runs)
    assert [r.rule_label for r in runs] == [
        "ep nudging=one-sided cost=mse", "ep nudging=symmetric cost=mse", "ep nudging=symmetric cost=ce"]  # fmt: skip
    assert len(representative_runs(runs)) == 3
