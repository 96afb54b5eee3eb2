"""Tests for the training loop: the run folder contract, reproducibility, learning, resuming (in-process and after
SIGKILL), refusing to overwrite, divergence, early stopping and config validation."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import bioplausible
from bioplausible import engine
from bioplausible.config import TrainConfig
from bioplausible.data import load_dataset
from bioplausible.engine import config_replace, fit
from bioplausible.errors import ConfigError
from bioplausible.runs import RunFolder, load_run, read_json

RUN_FILES = [".lock", "checkpoint.pt", "config.json", "metrics.jsonl", "probes.json", "summary.json"]


def metrics_of(path: str | Path) -> list[dict]:
    return RunFolder(path).read_metrics()


def comparable(records: list[dict]) -> list[dict]:
    """Metrics without the wall-clock ``time/...`` keys, which differ between any two runs."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def summary_of(path: str | Path) -> dict:
    return read_json(Path(path) / "summary.json")


# ---------------------------------------------------------------- the run folder


def test_run_folder_holds_config_metrics_summary_and_checkpoint(tiny_config):
    config = tiny_config(epochs=3, seed=7)
    path = fit(config, quiet=True)

    assert path == Path(config.out)
    assert sorted(p.name for p in path.iterdir()) == RUN_FILES  # and no temporary files left behind

    saved = read_json(path / "config.json")
    assert saved["version"] == bioplausible.__version__
    assert saved["seed"] == 7
    assert TrainConfig.from_dict(saved, drop_facts=True)

    records = metrics_of(path)
    lines = (path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(records) == 3
    steps_per_epoch = -(-256 // config.batch_size)  # synthetic has 256 training examples
    for epoch, record in enumerate(records, start=1):
        assert record["epoch"] == epoch
        assert record["step"] == epoch * steps_per_epoch
        for key in ("train/loss", "train/accuracy", "test/accuracy"):
            assert isinstance(record[key], float), key
        assert 0.0 <= record["test/accuracy"] <= 1.0
        assert any(k.startswith("probe/") for k in record), sorted(record)

    summary = summary_of(path)
    assert summary["status"] == "ok"
    assert summary["epochs"] == 3
    assert summary["test_accuracy"] == records[-1]["test/accuracy"]
    assert summary["train_accuracy"] == records[-1]["train/accuracy"]
    assert summary["best_test_accuracy"] == max(r["test/accuracy"] for r in records)
    assert summary["wall_time_s"] > 0
    assert summary["samples_per_s"] > 0

    checkpoint = RunFolder(path).load_checkpoint()
    assert checkpoint["state"]["epoch"] == 3
    assert set(checkpoint) >= {"model", "optimizer", "rule", "state", "rng"}


def test_probe_every_zero_logs_no_probes(tiny_config):
    path = fit(tiny_config(epochs=2, probe_every=0), quiet=True)
    assert not any(k.startswith("probe/") for record in metrics_of(path) for k in record)


# ---------------------------------------------------------------- reproducibility and learning


def test_fixed_seed_reproduces_metrics_and_other_seed_differs(tiny_config, tmp_path):
    first = fit(tiny_config(seed=3, out=str(tmp_path / "a")), quiet=True)
    again = fit(tiny_config(seed=3, out=str(tmp_path / "b")), quiet=True)
    other = fit(tiny_config(seed=4, out=str(tmp_path / "c")), quiet=True)

    assert comparable(metrics_of(first)) == comparable(metrics_of(again))
    assert comparable(metrics_of(first)) != comparable(metrics_of(other))


def test_init_is_applied_seeded_and_saved_with_the_run(tiny_config, tmp_path):
    lecun = fit(tiny_config(init="lecun", out=str(tmp_path / "a")), quiet=True)
    again = fit(tiny_config(init="lecun", out=str(tmp_path / "b")), quiet=True)
    default = fit(tiny_config(out=str(tmp_path / "c")), quiet=True)

    assert read_json(Path(lecun) / "config.json")["init"] == "lecun"
    assert comparable(metrics_of(lecun)) == comparable(metrics_of(again))
    assert comparable(metrics_of(lecun)) != comparable(metrics_of(default))


@pytest.mark.parametrize("seed", [0, 1])
def test_backprop_learns_synthetic(tiny_config, seed):
    path = fit(tiny_config(rule="bp", epochs=5, seed=seed, probe_every=0), quiet=True)
    summary = summary_of(path)
    assert summary["status"] == "ok"
    assert summary["test_accuracy"] > 0.9, summary
    records = metrics_of(path)
    assert records[-1]["train/loss"] < records[0]["train/loss"]


# ---------------------------------------------------------------- resuming


@pytest.mark.parametrize("rule", ["bp", "brsf", "dfa"])
def test_resume_in_process_matches_uninterrupted_run(tiny_config, tmp_path, rule):
    whole = fit(tiny_config(rule=rule, epochs=4, out=str(tmp_path / "whole")), quiet=True)

    first = tiny_config(rule=rule, epochs=2, out=str(tmp_path / "parts"))
    fit(first, quiet=True)
    assert len(metrics_of(first.out)) == 2
    parts = fit(config_replace(first, epochs=4, resume=True), quiet=True)

    assert comparable(metrics_of(parts)) == comparable(metrics_of(whole))
    resumed, uninterrupted = summary_of(parts), summary_of(whole)
    for key in ("status", "test_accuracy", "best_test_accuracy", "epochs", "steps"):
        assert resumed[key] == uninterrupted[key], key


def test_resume_with_early_stopping_state_matches_uninterrupted_run(tiny_config, tmp_path):
    settings = {"epochs": 6, "val_fraction": 0.2, "patience": 3, "probe_every": 2}
    whole = fit(tiny_config(out=str(tmp_path / "whole"), **settings), quiet=True)
    first = tiny_config(out=str(tmp_path / "parts"), **{**settings, "epochs": 3})
    fit(first, quiet=True)
    parts = fit(config_replace(first, epochs=6, resume=True), quiet=True)
    assert comparable(metrics_of(parts)) == comparable(metrics_of(whole))
    assert summary_of(parts)["test_accuracy_at_best_val"] == summary_of(whole)["test_accuracy_at_best_val"]


def test_a_decay_added_on_resume_equals_that_schedule_from_the_start(tiny_config, tmp_path):
    step = {"lr_schedule": "step", "lr_milestones": (2,)}
    whole = fit(tiny_config(epochs=3, out=str(tmp_path / "whole"), **step), quiet=True)
    first = tiny_config(epochs=2, out=str(tmp_path / "parts"))  # constant lr: what the step schedule gives epochs 1-2
    fit(first, quiet=True)
    parts = fit(config_replace(first, epochs=3, resume=True, **step), quiet=True)
    assert [r["train/lr"] for r in metrics_of(parts)] == pytest.approx([1e-2, 1e-2, 1e-3])
    assert comparable(metrics_of(parts)) == comparable(metrics_of(whole))
    assert read_json(Path(parts) / "config.json")["lr_schedule"] == "step"  # the folder describes the whole run


@pytest.mark.parametrize(
    "change", [{"lr_schedule": "step", "lr_milestones": (1,)}, {"lr_schedule": "cosine"}], ids=["step", "cosine"]
)
def test_a_schedule_that_rewrites_epochs_done_is_refused_on_resume(tiny_config, change):
    first = tiny_config(epochs=2)
    fit(first, quiet=True)
    with pytest.raises(ConfigError, match="epoch 2 of the 2 done trained at lr 0.01") as err:
        fit(config_replace(first, epochs=3, resume=True, **change), quiet=True)
    assert "\n" not in str(err.value)
    assert len(metrics_of(first.out)) == 2  # nothing trained


def test_a_lost_checkpoint_is_not_silently_replaced_by_a_fresh_start(tiny_config):
    config = tiny_config(epochs=2)
    fit(config, quiet=True)
    RunFolder(config.out).checkpoint.unlink()
    before = metrics_of(config.out)
    with pytest.raises(ConfigError, match="records 2 epoch.* but has no checkpoint.pt"):
        fit(config_replace(config, epochs=3, resume=True), quiet=True)
    assert metrics_of(config.out) == before


def test_a_step_budget_that_ended_mid_epoch_cannot_be_extended(tiny_config):
    config = tiny_config(max_steps=6, batch_size=64)  # 256 training examples: 4 steps an epoch, so 1.5 epochs
    fit(config, quiet=True)
    with pytest.raises(ConfigError, match="ended mid-epoch at step 6"):
        fit(config_replace(config, max_steps=8, resume=True), quiet=True)
    for epochs in (3, 2):  # an epoch budget (max_steps 0) went past the check and trained on from step 6
        with pytest.raises(ConfigError, match=f"ended mid-epoch at step 6 .*so --epochs {epochs} cannot continue"):
            fit(config_replace(config, max_steps=0, epochs=epochs, resume=True), quiet=True)
    fit(config_replace(config, resume=True), quiet=True)  # the same budget: nothing to train, not refused


def test_resuming_a_finished_run_changes_nothing(tiny_config):
    config = tiny_config(epochs=2)
    fit(config, quiet=True)
    before = metrics_of(config.out)
    fit(config_replace(config, resume=True), quiet=True)
    assert metrics_of(config.out) == before
    assert summary_of(config.out)["status"] == "ok"
    assert summary_of(config.out)["epochs"] == 2


def test_resuming_an_early_stopped_run_trains_no_further(tiny_config):
    config = tiny_config(epochs=60, patience=1, val_fraction=0.2, probe_every=0)
    fit(config, quiet=True)
    before = metrics_of(config.out)
    assert summary_of(config.out)["stopped_early"] is True
    fit(config_replace(config, resume=True), quiet=True)
    assert metrics_of(config.out) == before
    assert summary_of(config.out)["stopped_early"] is True


def test_resume_with_tuple_rule_option(tiny_config, tmp_path):
    first = tiny_config(rule="fa", rule_options={"bp_layers": ("last",)}, epochs=1)
    fit(first, quiet=True)
    path = fit(config_replace(first, epochs=2, resume=True), quiet=True)
    assert len(metrics_of(path)) == 2


@pytest.mark.parametrize(
    ("settings", "saved_option", "message"),
    [  # an earlier version let these through: the saved run continues as it was, with a warning
        ({"rule": "bp", "arch": "energy-net", "dataset": "synthetic"}, {"arch_options": {"nudged_steps": 5}},
         "--nudged-steps sets the nudged phase of energy-net"),
        ({"optimizer": "sgd"}, {"adam_beta2": 0.99}, "--adam-beta2 is an option of Adam"),
        ({"rule": "ep", "arch": "energy-net", "dataset": "synthetic"}, {"arch_options": {"epsilon": 0.3}},
         "epsilon is the Euler step, which neither phase uses"),  # the architecture's own check, in build() too
    ],
)  # fmt: skip
def test_a_saved_run_with_an_option_it_did_not_read_resumes_with_a_warning(
    tiny_config, tmp_path, settings, saved_option, message
):
    energy = {"arch_options": {"hidden_sizes": (8,), "free_steps": 3}} if settings.get("arch") == "energy-net" else {}
    config = tiny_config(epochs=1, **settings, **energy)
    path = fit(config, quiet=True)
    saved = json.loads((path / "config.json").read_text())
    for key, value in saved_option.items():  # as an earlier version would have saved it
        saved[key] = {**saved[key], **value} if isinstance(value, dict) else value
    (path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=message):  # a fresh run with it is refused
        fit(config_replace(TrainConfig.from_dict(saved, drop_facts=True), out=str(tmp_path / "new")), quiet=True)
    with pytest.warns(UserWarning, match=f"{message}.*the saved run holds it, and it still has no effect"):
        fit(config_replace(TrainConfig.from_dict(saved, drop_facts=True), epochs=2, resume=True), quiet=True)
    assert len(metrics_of(path)) == 2
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "ok" and any("the saved run holds it" in w for w in summary["warnings"])
    # the same run resumed without the unread value (a search that now drops its draw) still continues: a value
    # the run did not read cannot make it a different run
    fit(config_replace(config, epochs=3, resume=True), quiet=True)
    assert len(metrics_of(path)) == 3


def test_an_unread_option_given_on_resume_is_refused(tiny_config):
    """Only what the saved run holds is let through: an unread option typed on the resume is refused."""
    config = tiny_config(epochs=1, optimizer="sgd")
    fit(config, quiet=True)
    with pytest.raises(ConfigError, match="--adam-eps is an option of Adam"):
        fit(config_replace(config, epochs=2, resume=True, adam_eps=1e-6), quiet=True)


KILL_FLAGS = (
    "--dataset", "digits",
    "--arch", "mlp", "--depth", "2", "--width", "32",
    "--rule", "brsf",
    "--epochs", "3",
    "--batch-size", "4",  # ~360 steps: an epoch takes around half a second or more
    "--probe-every", "1",
    "--seed", "3",
    "--device", "cpu",
    "--threads", "1",
    "--no-progress",
)  # fmt: skip


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, run_cli):
    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "bioplausible.cli", "train", *KILL_FLAGS, "--out", str(out)]

    # The uninterrupted reference runs alongside the run we kill.
    reference = subprocess.Popen(
        command(tmp_path / "whole"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        command(tmp_path / "killed"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed = RunFolder(tmp_path / "killed")
    try:
        deadline = time.monotonic() + 1800  # a guard against a hang, not a speed limit
        while not (killed.summary.exists() and killed.read_metrics()) and victim.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no epoch within 30 minutes"
            time.sleep(0.01)
        time.sleep(0.2)  # into the second epoch
        was_running = victim.poll() is None
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()

    done_at_kill = len(killed.read_metrics())
    if was_running:
        assert victim.returncode == -signal.SIGKILL
        interrupted = summary_of(killed.path)
        assert interrupted["status"] == "running", "a killed run's summary must not read as finished"
        assert 1 <= interrupted["epochs"] <= done_at_kill
    assert done_at_kill >= 1

    resumed = run_cli("train", *KILL_FLAGS, "--out", tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("ok:"), resumed.stdout
    assert "resuming" in resumed.stderr

    _, reference_err = reference.communicate(timeout=1800)
    assert reference.returncode == 0, reference_err

    whole = metrics_of(tmp_path / "whole")
    assert len(whole) == 3
    assert comparable(killed.read_metrics()) == comparable(whole), f"killed after {done_at_kill} epoch(s)"
    assert summary_of(killed.path)["test_accuracy"] == summary_of(tmp_path / "whole")["test_accuracy"]


# ---------------------------------------------------------------- refusing to overwrite or mix runs


def test_refuses_to_overwrite_a_run(tiny_config):
    config = tiny_config(epochs=1)
    path = fit(config, quiet=True)
    before = (path / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="--resume"):
        fit(config, quiet=True)
    assert (path / "metrics.jsonl").read_text() == before


def test_refuses_to_resume_with_a_different_lr(tiny_config):
    config = tiny_config(epochs=1, lr=1e-2)
    fit(config, quiet=True)
    with pytest.raises(ConfigError, match=r"\blr\b"):
        fit(config_replace(config, epochs=2, lr=2e-2, resume=True), quiet=True)
    assert len(metrics_of(config.out)) == 1


def test_resume_needs_out(tiny_config):
    with pytest.raises(ConfigError, match="--out"):
        fit(tiny_config(out=None, resume=True), quiet=True)


# ---------------------------------------------------------------- divergence and early stopping


def test_divergence_ends_the_run_at_chance_accuracy(tiny_config):
    config = tiny_config(optimizer="sgd", lr=1e6, loss="mse", epochs=3)
    path = fit(config, quiet=True)  # returns normally
    summary = summary_of(path)
    assert summary["status"] == "diverged"
    assert summary["reason"]
    chance = 1.0 / load_dataset("synthetic").num_classes
    assert summary["test_accuracy"] == pytest.approx(chance)
    assert summary["epochs"] < config.epochs
    json.loads((path / "summary.json").read_text())  # valid JSON even if a loss was inf or NaN


def test_early_stopping_stops_when_validation_stalls(tiny_config):
    config = tiny_config(epochs=60, patience=1, val_fraction=0.2, probe_every=0)
    path = fit(config, quiet=True)
    summary = summary_of(path)
    records = metrics_of(path)

    assert summary["status"] == "ok"
    assert summary["stopped_early"] is True
    assert summary["epochs"] == len(records) < config.epochs
    assert all("val/accuracy" in r for r in records)
    # With patience 1 the last epoch is the first one that did not beat the best validation accuracy so far.
    assert records[-1]["val/accuracy"] <= max(r["val/accuracy"] for r in records[:-1])
    assert summary["val_accuracy"] == records[-1]["val/accuracy"]
    assert summary["test_accuracy_at_best_val"] is not None


def test_an_exception_in_training_is_recorded_as_failed_and_raised(tiny_config, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "train_one_epoch", broken)
    config = tiny_config()
    with pytest.raises(RuntimeError, match="boom"):
        fit(config, quiet=True)
    summary = summary_of(config.out)
    assert summary["status"] == "failed"
    assert "boom" in summary["error"]


def interrupt_every_epoch(*args, **kwargs):
    raise KeyboardInterrupt  # as Ctrl-C; SIGKILL leaves the same files (test above)


def test_an_interrupted_run_keeps_a_summary_of_its_last_epoch_marked_running(tiny_config, monkeypatch):
    real = engine.train_one_epoch
    config = tiny_config(epochs=1)
    fit(config, quiet=True)
    assert summary_of(config.out)["status"] == "ok"

    # resumed for more epochs and stopped before the first new one ends: no longer the finished run's summary
    monkeypatch.setattr(engine, "train_one_epoch", interrupt_every_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(config_replace(config, epochs=3, resume=True), quiet=True)
    summary = summary_of(config.out)
    assert summary["status"] == "running"
    assert "--resume" in summary["reason"]
    assert summary["epochs"] == 1
    assert summary["test_accuracy"] == metrics_of(config.out)[0]["test/accuracy"]
    from bioplausible.report import write_report

    write_report(Path(config.out).parent)
    report = (Path(config.out).parent / "report.md").read_text()
    assert "Not finished" in report and "run (1 of 3 epochs)" in report

    monkeypatch.setattr(engine, "train_one_epoch", real)
    fit(config_replace(config, epochs=3, resume=True), quiet=True)
    assert summary_of(config.out)["status"] == "ok"
    assert summary_of(config.out)["epochs"] == 3


def test_a_run_stopped_in_its_first_epoch_says_so(tiny_config, monkeypatch):
    monkeypatch.setattr(engine, "train_one_epoch", interrupt_every_epoch)
    config = tiny_config(max_steps=20, eval_steps=(10,))
    with pytest.raises(KeyboardInterrupt):
        fit(config, quiet=True)
    summary = summary_of(config.out)
    assert (summary["status"], summary["epochs"], summary["steps"]) == ("running", 0, 0)
    from bioplausible.report.compose import write_report_files

    written = write_report_files(Path(config.out).parent)
    assert written.notes and "run (0 of 20 steps)" in written.notes[0]


# ---------------------------------------------------------------- devices and validation


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="cuda"):
        fit(tiny_config(device="cuda"), quiet=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("epochs", -3), ("lr", 0.0), ("lr", -1.0), ("optimizer", "rmsprop")],
)
def test_validate_rejects_bad_values_naming_the_field(field, value):
    config = TrainConfig(**{field: value})
    with pytest.raises(ConfigError, match=rf"^{field}\b"):
        config.validate()


def test_fit_validates_before_touching_the_run_folder(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        fit(tiny_config(epochs=0), quiet=True)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- step budgets


def test_step_evaluations_equal_separate_shorter_runs(tiny_config, tmp_path):
    """The iteration axis of a study is exact: the test accuracy recorded at step k of a long run is the one a
    separate run of k steps (same seed) ends with, for steps inside and at the end of an epoch."""
    steps_per_epoch = 256 // 32  # synthetic: 256 training examples
    checkpoints = (3, steps_per_epoch, steps_per_epoch + 5)
    long = fit(tiny_config(max_steps=20, eval_steps=checkpoints, lr_schedule="constant"), quiet=True)
    evals = {r["step"]: r for r in metrics_of(long) if r.get("eval") == "step"}
    assert sorted(evals) == list(checkpoints)
    assert summary_of(long)["steps"] == 20 and summary_of(long)["epochs"] == 3
    for k in checkpoints:
        short = fit(tiny_config(max_steps=k, out=str(tmp_path / f"short{k}")), quiet=True)
        final = [r for r in metrics_of(short) if r.get("eval") != "step"][-1]
        assert final["step"] == k
        assert evals[k]["test/accuracy"] == final["test/accuracy"]
        assert evals[k]["test/loss"] == final["test/loss"]
        assert summary_of(long)["step_test_accuracy"][str(k)] == final["test/accuracy"]


def test_adam_is_fused_where_it_can_be_and_takes_what_torch_adam_takes():
    from bioplausible.optim import adam

    w, b = torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.zeros(3))
    assert adam([w, b], lr=1e-3).defaults["fused"]
    groups = adam([{"params": [w]}, {"params": [b], "lr": 1e-2}], lr=1e-3)
    assert groups.defaults["fused"] and groups.param_groups[1]["lr"] == 1e-2
    assert not adam([w], lr=1e-3, foreach=True).defaults["fused"]  # the caller's choice stands
    assert not adam([w], lr=1e-3, fused=False).defaults["fused"]


# ---------------------------------------------------------------- warnings


def test_a_run_that_was_warned_about_says_so_in_its_summary_report_and_result_line(tmp_path, capsys):
    """An EP net killed by too large a rate ends "ok" (it trained every epoch) but is dead: the warning, shown as it
    came, is also kept in summary.json (through a resume), marked in the report's status cell and named under the
    CLI's result line; a run without warnings keeps an empty list."""
    from bioplausible.cli import main
    from bioplausible.report import write_report

    args = ["train", "--rule", "ep", "--arch", "energy-net", "--hidden-sizes", "32", "--lr", "5", "--no-progress"]
    out = tmp_path / "dead"
    with pytest.warns(RuntimeWarning, match="dead network"):
        assert main([*args, "--epochs", "1", "--out", str(out)]) == 0
    assert "warned 1 time while training" in capsys.readouterr().out
    assert main([*args, "--epochs", "2", "--resume", "--out", str(out)]) == 0  # warned again: kept once
    summary = summary_of(out)
    assert summary["status"] == "ok" and len(summary["warnings"]) == 1 and "dead network" in summary["warnings"][0]
    write_report(out)
    report = (out / "report.md").read_text()
    assert re.search(r"\| ok, warned +\|", report) and "This run was warned about while training" in report

    assert main(["train", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "fine")]) == 0
    assert summary_of(tmp_path / "fine")["warnings"] == []


def test_warnings_from_before_the_first_epoch_are_kept_and_a_resume_does_not_repeat_them(tmp_path):
    """prepare() warns too (symmetric MSE nudging at β = 1 with settled nudged phases), and a resumed EP run does
    not warn again what it warned before (its kinds travel with the checkpoint)."""
    from bioplausible.cli import main

    args = ["train", "--rule", "ep", "--arch", "energy-net", "--hidden-sizes", "8", "--nudging", "symmetric"]
    args += ["--beta", "1", "--settle", "euler", "--epsilon", "0.05", "--free-steps", "5", "--tolerance", "0"]
    args += ["--nudged-settle", "block"]
    out = str(tmp_path / "run")
    with pytest.warns(RuntimeWarning):
        assert main([*args, "--epochs", "1", "--no-progress", "--out", out]) == 0
    first = summary_of(out)["warnings"]
    assert any("far from an equilibrium" in w for w in first)
    assert any("has no nudged equilibrium" in w for w in first), first  # from prepare()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--epochs", "2", "--resume", "--no-progress", "--out", out]) == 0
    assert not any("far from an equilibrium" in str(w.message) for w in caught)
    assert summary_of(out)["warnings"][: len(first)] == first


def test_kept_warnings_differ_by_more_than_their_numbers_and_are_capped():
    from bioplausible.engine import KEPT_WARNINGS, merged_warnings

    kept = merged_warnings(["W: moved by 0.11 (5 steps)"], ["W: moved by 0.12 (6 steps)", "W: dead at 1e-05"])
    assert kept == ["W: moved by 0.11 (5 steps)", "W: dead at 1e-05"]
    many = merged_warnings([], [f"W: kind {chr(97 + i % 26)}{i // 26}" for i in range(30)])
    assert len(many) == KEPT_WARNINGS + 1 and many[-1].startswith("more warnings were shown")


@pytest.mark.parametrize(
    ("rule", "init", "feedback_init", "optimizer", "warned"),
    [("usf", "xavier", "default", "sgd", True), ("fa", "lecun", "default", "sgd", True),
     ("kp", "xavier", "default", "sgd", True), ("frsf", "default", "xavier", "sgd", True),
     ("usf", "xavier", "default", "adam", False), ("wm", "xavier", "default", "sgd", False),
     ("usf", "xavier", "xavier", "sgd", False), ("fa", "default", "default", "sgd", False),
     ("dfa", "xavier", None, "sgd", False), ("bp", "xavier", None, "sgd", False)],
)  # fmt: skip
def test_feedback_drawn_on_another_scale_than_the_init_is_not_silent(
    tiny_config, rule, init, feedback_init, optimizer, warned
):
    """fa, the sign-symmetry family and kp draw B on --feedback-init's scale (PyTorch's default unless set):
    where --init draws W on another, the feedback is weaker or stronger than W (√3 on a square layer under Xavier),
    which under SGD sets each layer's effective learning rate (on ResNet-20, CIFAR-10, 30 epochs, usf ended 9 points
    worse than with BioTorch's Xavier-drawn feedback), so the run warns, names the fix, and keeps the warning.
    Adam rescales each parameter's update, wm pulls B to W within ~100 batches, DFA's B is no chain through
    depth, bp has none: no warning."""
    options = {} if feedback_init is None else {"feedback_init": feedback_init}
    config = tiny_config(rule=rule, init=init, epochs=1, optimizer=optimizer, rule_options=options)
    run = load_run(fit(config))
    kept = [w for w in run["summary"]["warnings"] if "--feedback-init" in w]
    assert bool(kept) == warned, run["summary"]["warnings"]
    if warned:
        assert f"--init {init}" in kept[0] and repr(rule) in kept[0] and f"set --feedback-init {init}" in kept[0]
        assert f"--init {feedback_init}" in kept[0]  # the other way to draw them alike


@pytest.mark.parametrize("rule", ["fa", "usf", "frsf", "brsf", "kp", "wm"])
def test_feedback_init_draws_b_with_the_schemes_scale(rule):
    """--feedback-init xavier draws B (or the sign magnitudes) with Xavier's bound √(6 / (fan_in + fan_out)), as
    BioTorch draws it; the default keeps PyTorch's 1/√fan_in exactly (the runs recorded with it repeat)."""
    from bioplausible.archs import create_arch
    from bioplausible.rules import create_rule

    def bound(scheme: str) -> float:
        torch.manual_seed(0)
        model = create_arch("convnet", (3, 8, 8), 10, channels=16, depth=2)
        converted = create_rule(rule, feedback_init=scheme)
        converted.prepare(model, torch.zeros(1, 3, 8, 8))
        layer = converted.layers["convs.1"]  # 16 -> 16 channels, 3x3: fan_in = fan_out = 144
        if rule in ("usf", "frsf", "brsf"):
            return layer.feedback_mode.bound
        return layer.feedback.abs().max().item()  # B ~ U(-k, k) over 2,304 entries: its largest is near k

    default, xavier = 1 / 144**0.5, (6 / 288) ** 0.5
    exact = rule in ("usf", "frsf", "brsf")
    assert bound("default") == default if exact else 0.95 * default < bound("default") <= default
    assert bound("xavier") == pytest.approx(xavier) if exact else 0.95 * xavier < bound("xavier") <= xavier


def test_a_resumed_run_keeps_the_version_that_started_it(tiny_config):
    """config.json's version says which code drew the run's weights (0.2.0's Xavier counted a convolution's fan_out
    without its kernel): resuming under another version keeps it; summary.json names the last writer."""
    from bioplausible import __version__

    config = tiny_config(epochs=1)
    path = fit(config)
    saved = read_json(path / "config.json")
    (path / "config.json").write_text(json.dumps({**saved, "version": "0.2.0"}))
    fit(config_replace(config, epochs=2, resume=True))
    assert read_json(path / "config.json")["version"] == "0.2.0"
    assert read_json(path / "summary.json")["version"] == __version__


def test_a_resume_that_changes_where_or_how_the_run_runs_says_so_and_each_epoch_keeps_its_threads(tmp_path, capsys):
    """config.json holds the new value only (threads 2 for the whole run): the change is said when resuming, and
    each epoch's record keeps the thread count it ran with."""
    from bioplausible.cli import main

    args = ["train", "--dataset", "digits", "--arch", "mlp", "--width", "8", "--depth", "1", "--no-progress"]
    assert main([*args, "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--threads", "2", "--resume", "--out", str(tmp_path / "r")]) == 0
    assert "resuming" in (err := capsys.readouterr().err) and "after epoch 1; epochs 1 -> 2; threads 1 -> 2" in err
    assert [r["time/threads"] for r in load_run(tmp_path / "r")["metrics"]] == [1, 2]
    assert main([*args, "--epochs", "2", "--threads", "1", "--resume", "--out", str(tmp_path / "r")]) == 0
    assert "nothing to train" in (err := capsys.readouterr().err) and "(summary rewritten); threads 2 -> 1" in err
    # a step budget below what is trained would be saved as the run's budget
    assert main([*args, "--epochs", "3", "--max-steps", "5", "--resume", "--out", str(tmp_path / "r")]) == 2
    assert "has trained 46 steps, more than --max-steps 5" in capsys.readouterr().err
    assert read_json(tmp_path / "r" / "config.json")["max_steps"] == 0


def test_a_step_budget_that_replaces_an_epoch_count_given_says_so(tmp_path, capsys):
    from bioplausible.cli import main

    args = ["train", "--dataset", "digits", "--arch", "mlp", "--width", "8", "--depth", "1", "--no-progress"]
    assert main([*args, "--epochs", "3", "--max-steps", "5", "--out", str(tmp_path / "a")]) == 0
    assert "note: --max-steps 5 sets the epochs to 1 (the settings said 3)" in capsys.readouterr().err
    assert read_json(tmp_path / "a" / "config.json")["epochs"] == 1
    assert main([*args, "--max-steps", "5", "--out", str(tmp_path / "b")]) == 0  # no count given: nothing to say
    assert "note: --max-steps" not in capsys.readouterr().err


def test_a_step_budget_counts_the_batches_left_after_the_validation_split(tmp_path):
    """--max-steps with --val-fraction planned its epochs on the whole training set and stopped short (24 of 30
    steps on digits at half held out); an eval step beyond that was then never made, without a word."""
    config = TrainConfig(dataset="digits", arch="mlp", arch_options={"depth": 1, "width": 8}, max_steps=30,
                         val_fraction=0.5, eval_steps=(28,), progress=False, out=str(tmp_path / "r"))  # fmt: skip
    run = load_run(fit(config, quiet=True))
    assert run["metrics"][-1]["step"] == 30
    assert [r["step"] for r in run["step_metrics"]] == [28]
