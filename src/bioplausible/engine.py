"""The training loop: ``fit(config) -> run folder``.

One explicit loop, no callbacks: for each epoch, train (``rule.step`` fills ``.grad``, the optimizer applies it),
evaluate, probe, log, checkpoint. Divergence ends the run as a result (``status: diverged``, with the reason),
not a crash; a killed run resumes from its last checkpoint and ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import __version__
from .build import (
    TrainState,
    auto_threads,
    build,
    lr_factor,
    precision_context,
    resolve_config,
    resolve_device,
    set_backends,
    unread_options,
    without_keys,
)
from .config import RESUMABLE, SETTINGS, TrainConfig
from .data import Dataset, dataset_identity, load_dataset, loaded_as
from .distributed import SINGLE, Distributed, init_distributed
from .errors import ConfigError
from .probes import ALIGNMENT_PROBES, alignment_probes, same_random_streams
from .rules import Rule
from .runs import RunFolder, read_json, write_json

CHECK_EVERY_CUDA = 25  # steps between divergence checks on a GPU (each check waits for the device); CPU: every step


class Diverged(Exception):
    """The training loss (or a rule's own dynamics) became NaN/inf or exploded."""


def default_out(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.dataset}-{config.arch}-{config.rule}-s{config.seed}-{stamp}"


# The schedule may change on resume where no epoch has trained yet (check_schedule).
SCHEDULE = frozenset({"lr_schedule", "lr_milestones"})


def resolve_saved(saved: dict[str, Any]) -> TrainConfig:
    """A saved run's config, resolved as a record: an option it holds that the run did not read (one an earlier
    version let through) is kept without a word here; ``fit`` warns about it once when the run is resumed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve_config(TrainConfig.from_dict(saved, drop_facts=True), saved=saved)


def saved_config(config: TrainConfig) -> dict[str, Any] | None:
    """The config.json of the run ``config`` resumes, if there is one."""
    path = RunFolder(config.out).config if config.resume and config.out else None
    return read_json(path) if path is not None and path.is_file() else None


def resume_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings in which ``config`` differs from a saved run's config, resumable ones aside. The saved config
    is resolved first, so a run written before options were saved resolved compares by its defaults."""
    before = resolve_saved(saved)
    unread = list(unread_options(before))  # what the saved run held but did not read cannot make a difference
    saved = as_json(without_keys(before, unread).to_dict())
    mine = as_json(without_keys(config, unread).to_dict())
    return [k for k in sorted(SETTINGS - RESUMABLE - SCHEDULE) if saved[k] != mine[k]]


def changed_on_resume(saved: dict[str, Any], config: TrainConfig) -> str:
    """The resumable settings (where and how it runs, the budget) that a resume changes, as "; threads 1 -> 2":
    config.json keeps only the new values, and each epoch's record its own thread count (``time/threads``)."""
    before, now = as_json(resolve_saved(saved).to_dict()), as_json(config.to_dict())
    changed = [k for k in sorted(RESUMABLE - {"resume"}) if k in before and before[k] != now[k]]
    return "".join(f"; {k} {json.dumps(before[k])} -> {json.dumps(now[k])}" for k in changed)


def check_schedule(saved: dict[str, Any], config: TrainConfig, done: int, log) -> None:
    """A resume may change the learning-rate schedule only where no epoch has trained yet: every epoch done must
    have had the rate the new schedule gives it (e.g. constant → step with milestones from ``done`` on, which adds a
    decay to a run). The run then continues exactly as one trained with the new schedule from the start."""
    before = resolve_saved(saved)
    if all(getattr(before, k) == getattr(config, k) for k in SCHEDULE):
        return
    old, new = describe_schedule(before), describe_schedule(config)
    for epoch in range(done):
        if lr_factor(before, epoch) != lr_factor(config, epoch):
            raise ConfigError(
                f"cannot resume {config.out} with the learning-rate schedule {new}: epoch {epoch + 1} of the {done} "
                f"done trained at lr {config.lr * lr_factor(before, epoch):g} ({old}), the new schedule gives it "
                f"{config.lr * lr_factor(config, epoch):g}; a new schedule may only change epochs after {done}"
            )
    log(f"learning-rate schedule {old} -> {new}: the {done} epochs done had the same rates, so the run continues as "
        "one trained with the new schedule from the start")  # fmt: skip


def check_nothing_trained(run: RunFolder, log) -> None:
    """A resumed folder without a checkpoint starts from the beginning, which is right only if it recorded no
    epoch (it was stopped in its first one); otherwise its checkpoint was lost and its metrics would be
    overwritten: refused."""
    recorded = run.read_metrics()
    if recorded:
        raise ConfigError(
            f"{run.path} records {max(r['epoch'] for r in recorded)} epoch(s) in metrics.jsonl but has no "
            "checkpoint.pt to continue from: restore it, or start the run again in a new --out"
        )
    log(f"{run.path} holds no finished epoch (stopped in its first): training from the start")


def check_step_budget(loop: dict[str, Any], full_epochs_steps: int, config: TrainConfig, run: RunFolder) -> None:
    """Refuse a --max-steps below the steps trained, and a larger one for a run whose last budget ended mid-epoch:
    the rest of that epoch would be skipped (the next epoch starts a new shuffle), so it would not equal a run given
    the larger budget at once."""
    step = loop["step"]
    mid_epoch = step < full_epochs_steps  # its last budget ended inside an epoch
    if config.max_steps and config.max_steps < step:  # config.json would say a budget the run has overrun
        raise ConfigError(
            f"{run.path} has trained {step} steps, more than --max-steps {config.max_steps}: give "
            + (f"{step} (it ended mid-epoch, so it cannot go on)" if mid_epoch else f"{step} or more")
        )
    if mid_epoch and (not config.max_steps or config.max_steps > step):  # 0: an epoch budget, beyond it too
        more = f"--max-steps {config.max_steps}" if config.max_steps else f"--epochs {config.epochs}"
        raise ConfigError(
            f"{run.path} ended mid-epoch at step {step} (its step budget), so {more} cannot continue it exactly: "
            f"the rest of epoch {loop['epoch']} would be skipped; start a new run with {more}"
        )


def describe_augmentation(data: Any) -> str:
    """What transforms the training batches, as config.json records it: the transform's repr (its class and
    settings, e.g. ``RandomCropFlip(padding=4)``), or ``none``. ``--augment`` is on by default and means "the
    dataset's standard augmentation, if it has one": on MNIST it is ``none``, which the record then says."""
    augment = getattr(data, "augment", None)
    if augment is None:
        return "none"
    if hasattr(augment, "__qualname__"):  # a function (a lambda says <lambda>, but where it was written)
        return f"{augment.__module__}.{augment.__qualname__}"
    text = repr(augment)  # a default repr's address would differ between two runs of the same thing
    return f"{type(augment).__module__}.{type(augment).__qualname__}" if " at 0x" in text else text


def describe_schedule(config: TrainConfig) -> str:
    milestones = f" (milestones {','.join(map(str, config.lr_milestones))})" if config.lr_milestones else ""
    return f"{config.lr_schedule}{milestones}"


def as_json(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as JSON sees it (tuples become lists), for comparing a config with a saved one."""
    return json.loads(json.dumps(data))


def open_run_folder(config: TrainConfig, dist: Distributed, log) -> tuple[RunFolder, dict[str, Any] | None]:
    """The locked run folder, and the saved config when resuming; refuses to overwrite a run, to resume a different
    one, or to share a folder with another process."""
    if config.resume and not config.out:
        raise ConfigError("--resume needs --out: the folder of the run to continue")
    run = RunFolder(config.out or default_out(config))
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"--out {run.path} is a file; give a folder for the run")
    if not run.holds_run():  # --resume on a folder without a run starts it: "run or continue", said aloud
        if config.resume:
            log(f"nothing to resume in {run.path} yet: starting the run there")
        saved = None
    elif not config.resume:
        raise ConfigError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")
    else:
        saved = read_json(run.config)
    if dist.is_main:
        run.lock()  # a second writer is refused here, with one line
    return run, saved


def check_resume(saved: dict[str, Any], config: TrainConfig, log) -> None:
    """Refuse a resume that changes a setting other than the resumable ones; say what a changed length does."""
    differ = resume_differences(saved, config)
    if differ:
        resolved = as_json(resolve_saved(saved).to_dict())
        mine = as_json(config.to_dict())
        details = "; ".join(f"{k}: saved {json.dumps(resolved[k])}, given {json.dumps(mine[k])}" for k in differ)
        raise ConfigError(
            f"cannot resume {config.out} with different settings ({details}); only the number of epochs or steps, "
            "the evaluation steps, the learning-rate schedule of epochs not trained yet, and where and how it runs may "
            "change"
        )
    if saved.get("epochs") != config.epochs and config.lr_schedule == saved.get("lr_schedule") == "cosine":
        log(
            f"epochs {saved.get('epochs')} -> {config.epochs}: the {config.lr_schedule} learning-rate schedule is "
            f"re-planned over {config.epochs} epochs from the next epoch on"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module, loss_fn, batches, context=nullcontext, predict=None, split: str = "test", size: int | None = None
) -> dict:
    """Mean loss and accuracy of ``model`` over (x, y) batches of ``split`` (``size`` examples), in eval mode (each
    forward inside ``context()``, e.g. the run's autocast); ``predict(model, x, split, offset, size)`` (the rule's)
    gives the outputs where a rule keeps per-example evaluation state, else ``model(x)``."""
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    for x, y in batches:
        with context():
            out = model(x) if predict is None else predict(model, x, split, int(count), size)
        out = out.float()
        loss += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(-1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    return {"loss": loss / count, "accuracy": correct / count}


def evaluate_epoch(state: TrainState, data: Dataset, val, config: TrainConfig, context) -> dict[str, float]:
    """Test (and validation) metrics after an epoch; updates the best-so-far and early-stopping bookkeeping."""
    loop, loss_fn = state.loop, state.rule.loss_fn
    predict = state.rule.predict
    test = evaluate(
        state.model, loss_fn, data.test_batches(config.eval_batch_size), context, predict, "test", data.num_test
    )
    record = {"test/loss": test["loss"], "test/accuracy": test["accuracy"]}
    if test["accuracy"] > loop["best_test_accuracy"]:
        loop["best_test_accuracy"], loop["best_epoch"] = test["accuracy"], loop["epoch"]
    if val is not None:
        v = evaluate(
            state.model, loss_fn, tensor_batches(*val, config.eval_batch_size), context, predict, "val", len(val[1])
        )
        record.update({"val/loss": v["loss"], "val/accuracy": v["accuracy"]})
        if v["accuracy"] > loop["best_val_accuracy"]:
            loop.update(best_val_accuracy=v["accuracy"], test_at_best_val=test["accuracy"], bad_epochs=0)
        else:
            loop["bad_epochs"] += 1
    return record


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size))


def batches_per_epoch(data: Dataset, config: TrainConfig) -> int:
    """Optimizer steps in one full epoch (fewer with ``max_batches``)."""
    total = math.ceil(data.num_train / config.batch_size)
    return min(total, config.max_batches) if config.max_batches else total


EPOCHS_DEFAULT = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "epochs")


def planned_epochs(data: Dataset, config: TrainConfig) -> int:
    """The number of epochs to train: ``epochs``, or as many as a ``max_steps`` budget needs."""
    if config.max_steps:
        return math.ceil(config.max_steps / batches_per_epoch(data, config))
    return config.epochs


def check_divergence(loss: float, metrics: dict[str, float], reference: float, config: TrainConfig, rule: Rule, step):
    """Raise Diverged when the loss or any metric is not finite, the loss exceeds ``diverge_factor`` times the
    chance-level loss (so a run huge from its first step is caught too), or the rule's own check fails."""
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise Diverged(f"{', '.join(bad)} became {metrics[bad[0]]} at step {step}")
    if loss > config.diverge_factor * reference:
        raise Diverged(
            f"loss {loss:.4g} at step {step} is over {config.diverge_factor:g}× the chance-level loss {reference:.4g}"
        )
    reason = rule.diverged(metrics)
    if reason:
        raise Diverged(f"{reason} at step {step}")


def train_one_epoch(
    state: TrainState,
    data: Dataset,
    config: TrainConfig,
    desc: str,
    dist: Distributed = SINGLE,
    step_evals: dict[int, dict[str, float] | None] | None = None,
    reference_loss: float = math.inf,
) -> dict[str, float]:
    """One pass over the shuffled training set; returns the epoch's mean train metrics. Raises Diverged.

    ``step_evals`` maps global steps to None; at each of them reached in this epoch the test metrics are
    evaluated (no random stream is touched, so the run continues exactly as without them) and stored there.
    """
    model, rule, optimizer, loop = state.model, state.rule, state.optimizer, state.loop
    step_evals = {} if step_evals is None else step_evals
    context = lambda: precision_context(config, state.device)  # noqa: E731
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    indexed = rule.per_example_state
    batches = data.train_batches(config.batch_size, state.generator, dist.rank, dist.world_size, with_index=indexed)
    total = batches_per_epoch(data, config)
    if config.max_steps:  # the last epoch of a step budget stops where the budget ends
        total = min(total, config.max_steps - loop["step"])
    if total < math.ceil(data.num_train / config.batch_size):
        batches = itertools.islice(batches, total)
    check_every = CHECK_EVERY_CUDA if state.device.type == "cuda" else 1  # a CPU check costs nothing to wait for
    bar = tqdm(batches, total=total, desc=desc, leave=False, disable=config.progress is False or None, file=sys.stderr)
    for i, (x, y, *index) in enumerate(bar):
        dist.global_batch = min(config.batch_size, data.num_train - i * config.batch_size)
        if config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with context():
            metrics = rule.step(model, x, y, index=index[0] if indexed else None)
        dist.average(model)  # between rule.step and optimizer.step: every rule trains data-parallel
        if state.scaler is not None:
            state.scaler.step(optimizer)
            state.scaler.update()
        else:
            optimizer.step()
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() * len(y)
        seen += len(y)
        loop["step"] += 1
        loop["samples"] += len(y) * dist.world_size
        if loop["step"] in step_evals:
            batches_ = data.test_batches(config.eval_batch_size)
            # their own states: evaluating at steps must not move where the epoch's evaluation starts
            step_evals[loop["step"]] = evaluate(
                model, rule.loss_fn, batches_, context, rule.predict, "test-steps", data.num_test
            )
        if i % check_every == 0 or i == total - 1:
            values = {k: dist.mean(v.detach().float()).item() for k, v in metrics.items()}  # all processes agree
            check_divergence(values["loss"], values, reference_loss, config, rule, loop["step"])
            bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
    means = {f"train/{k}": dist.mean(v / seen).item() for k, v in sums.items()}
    if not math.isfinite(means["train/loss"]):
        raise Diverged(f"mean train loss {means['train/loss']} in epoch")
    return means


def fresh_loop() -> dict[str, Any]:
    return {
        "epoch": 0,
        "step": 0,
        "samples": 0,
        "train_time_s": 0.0,
        "wall_time_s": 0.0,
        "best_test_accuracy": 0.0,
        "best_epoch": 0,
        "best_val_accuracy": -1.0,
        "test_at_best_val": None,
        "bad_epochs": 0,
        "stopped_early": False,
    }


def probe_specs(rule: Rule, in_model_order: bool = True) -> list[dict[str, Any]]:
    """The probes this run logs, as the report reads them from ``probes.json``; per-layer values are logged in the
    model's module order (metrics.jsonl keeps the order), which the figures shade input to output, unless the run
    began before that was so (``in_model_order`` False: see :func:`logged_in_model_order`)."""
    specs = (*ALIGNMENT_PROBES, *type(rule).probes)
    order = {"layer_order": "model"} if in_model_order else {}
    return [{**spec.to_dict(), **order} if spec.per_layer else spec.to_dict() for spec in specs]


def logged_in_model_order(run: RunFolder, records: list[dict[str, Any]]) -> bool:
    """Whether the run's records list their per-layer probes in the model's order: a fresh run's do; a run resumed
    from before 0.2.1 (its probes.json says no order) keeps its earlier records, whose keys were sorted, and the
    figures read the order from them, so it must not claim the model's."""
    if not records:
        return True
    saved = read_json(run.probes) if run.probes.exists() else []
    return any(isinstance(spec, dict) and spec.get("layer_order") == "model" for spec in saved)


def run_probes(state: TrainState, x: torch.Tensor, y: torch.Tensor, context) -> dict[str, float]:
    """The generic alignment probes and the rule's own, on the fixed probe batch; no state or random stream of the
    run changes (a run with probes trains exactly as one without)."""
    rule, dist = state.rule, state.rule.dist
    rule.dist = SINGLE  # every process probes the same whole batch: no collective, no share of a global batch
    try:
        with context():
            record = alignment_probes(state.model, rule, x, y)
            with same_random_streams(state.model):
                record.update(rule.probe(state.model, x, y))
    finally:
        rule.dist = dist
    return record


def load_data(config: TrainConfig) -> Dataset:
    return load_dataset(config.dataset, config.data_dir, download=config.download, **config.dataset_options)


def check_loaded_as(data: Dataset, config: TrainConfig) -> None:
    """ConfigError when a dataset handed to ``fit`` is not the one the config names (config.json would record the
    config's): loaded as another dataset or with other options, or built by hand under another name."""
    loaded = loaded_as(data)
    if loaded is None:  # built by hand: its name is all there is to check
        if data.name != config.dataset:
            raise ConfigError(
                f"the dataset passed to fit is named {data.name!r} but the config names {config.dataset!r}, which "
                "the run would record as what it trained on: register the dataset (bioplausible.registry.DATASETS) "
                "and name it in the config"
            )
        return
    name, wanted = dataset_identity(config.dataset, config.dataset_options)
    if loaded["dataset"] != name:
        raise ConfigError(
            f"the dataset passed to fit was loaded as {loaded['dataset']!r}, but the config asks for {name!r}: load it "
            "with load_data(config), or drop data= so that fit loads it"
        )
    for split in ("num_train", "num_test"):  # a subset of a loaded dataset (split_validation, a slice)
        if split in loaded and getattr(data, split) != loaded[split]:
            raise ConfigError(
                f"the dataset passed to fit holds {getattr(data, split)} {split[4:]} examples, not the "
                f"{loaded[split]} it was loaded with, which the run would record: pass the dataset as loaded (a "
                "validation split is the config's val_fraction)"
            )
    differ = sorted(k for k in {**loaded["options"], **wanted} if loaded["options"].get(k) != wanted.get(k))
    if differ:
        got = ", ".join(f"{k}={loaded['options'].get(k)!r}" for k in differ)
        asked = ", ".join(f"{k}={wanted.get(k)!r}" for k in differ)
        raise ConfigError(
            f"the dataset passed to fit was loaded as {name!r} with {got}, but the config asks for {asked}: load it "
            "with load_data(config), or drop data= so that fit loads it"
        )


def fit(config: TrainConfig, data: Dataset | None = None, quiet: bool = False) -> Path:
    """Train ``config.rule`` on ``config.arch`` and ``config.dataset``; returns the run folder.

    Args:
        config: every setting of the run (see ``TrainConfig``); defaults of the rule's, architecture's and
            dataset's options are filled in and saved.
        data: an already loaded dataset (saves reloading it for many runs); default: load ``config.dataset``.
        quiet: print no per-epoch line.
    """
    kept: list[str] = []
    with warnings_kept(kept):  # a saved run keeps what an earlier version let through, with a warning
        config = resolve_config(config, saved=saved_config(config))
    dist = init_distributed(config.device)
    device = resolve_device(config.device, dist.local_rank)
    precision_context(config, device)  # a precision the device cannot run is refused before any folder is made
    quiet = quiet or not dist.is_main
    log = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))
    run, saved = open_run_folder(config, dist, log)
    dist.barrier()  # every process has looked at the folder before the main one writes to it
    try:
        with warnings_kept(kept):  # from loading the data on: a rule's prepare() warns too
            return train(config, data, dist, device, run, saved, log, kept)
    finally:
        if dist.is_main:
            run.unlock()


def train(config, data, dist, device, run: RunFolder, saved, log, kept: list[str]) -> Path:
    """The body of :func:`fit`, once the run folder is held; ``kept`` collects the warnings shown meanwhile."""
    if saved is not None:
        check_resume(saved, config, log)
    if data is not None:
        check_loaded_as(data, config)
    data = data if data is not None else load_data(config)
    if not config.augment and getattr(data, "augment", None) is not None:
        data = copy.copy(data)  # the caller's dataset keeps its augmentation
        data.augment = None
    val = None  # split first: a step budget and the eval steps count the batches of what is left
    if config.val_fraction > 0:
        data, val = data.split_validation(config.val_fraction, seed=config.seed)
        val = tuple(t.to(device) for t in val)
    if config.max_steps:  # resolved before anything reads the epoch count (the cosine schedule's length)
        planned = planned_epochs(data, config)
        if config.epochs not in (planned, EPOCHS_DEFAULT):  # a count the user gave, replaced: say so
            said = f"the settings said {config.epochs}"
            log(f"note: --max-steps {config.max_steps} sets the epochs to {planned} ({said})")
        config = dataclasses.replace(config, epochs=planned)
    steps = config.max_steps or config.epochs * batches_per_epoch(data, config)
    late = [s for s in config.eval_steps if s > steps]
    if late:  # they would silently never be evaluated
        raise ConfigError(f"eval_steps {', '.join(map(str, late))} come after the run's last step {steps}")
    unused = [m for m in config.lr_milestones if m >= config.epochs]
    if unused:  # said, not refused: a run may be extended with --resume and more epochs later
        log(
            f"note: lr milestone(s) {', '.join(map(str, unused))} at or after the last epoch ({config.epochs}): "
            "the rate does not decay there in this run"
        )
    data = data.to(device)
    backends = set_backends(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    state = build(config, data, device, dist)
    state.rule.plan(config.epochs)
    if not config.threads and device.type == "cpu":
        torch.set_num_threads(auto_threads(state.model, data.sample(1)[0], dist.world_size))
    if state.scaler is not None:
        if not type(state.rule).loss_scaling:
            raise ConfigError(f"rule {config.rule!r} cannot train with --precision fp16 (no loss to scale); use bf16")
        state.rule.scaler = state.scaler
    state.loop = fresh_loop()
    records: list[dict[str, Any]] = []
    if saved is not None and not run.checkpoint.exists():
        check_nothing_trained(run, log)
    elif saved is not None:
        state.load_state_dict(run.load_checkpoint(map_location=device))
        records = [r for r in run.read_metrics() if r["epoch"] <= state.loop["epoch"]]
        done = state.loop["epoch"]
        check_schedule(saved, config, done, log)
        check_step_budget(state.loop, done * batches_per_epoch(data, config), config, run)
        if done > config.epochs and not config.max_steps:
            raise ConfigError(
                f"{run.path} has {done} epochs done, more than --epochs {config.epochs}: give {done} or more"
            )
        if done >= config.epochs or state.loop["stopped_early"]:
            if state.loop["stopped_early"]:
                why = "it stopped early (no validation improvement); start a new run to train it further"
            else:
                why = f"{done} of {config.epochs} epochs are done; raise --epochs to continue"
            log(f"nothing to train in {run.path}: {why} (summary rewritten){changed_on_resume(saved, config)}")
        else:
            log(f"resuming {run.path} after epoch {done}{changed_on_resume(saved, config)}")
    facts = {
        # the version that drew the initial weights and feedback: a resumed run keeps its first one (summary.json
        # names the last version that wrote to it)
        "version": ((saved or {}).get("version") or __version__) if records else __version__,
        "torch_version": torch.__version__,
        "device_used": str(device),
        "world_size": dist.world_size,
        "threads_used": torch.get_num_threads(),
        "backends": backends,
        "data_source": getattr(data, "source", None),
        "augmentation": describe_augmentation(data),
        "out": str(run.path),
    }
    config = dataclasses.replace(config, **facts)
    if dist.is_main:
        write_json(run.config, config.to_dict())
        write_json(run.probes, probe_specs(state.rule, logged_in_model_order(run, records)))
        # From here until the end the summary says the run is not finished, even if it is killed in its first epoch.
        write_json(run.summary, summarize(config, data, records, state.loop, "running", UNFINISHED))
    kept[:] = merged_warnings(state.loop.get("warnings", []), kept)  # a resumed run keeps its earlier ones
    state.loop["warnings"] = kept  # the same list: what is shown from here on is saved with each epoch
    status, reason = epochs_loop(state, data, val, config, dist, run, records, log)
    if dist.is_main:
        write_json(run.summary, summarize(config, data, records, state.loop, status, reason))
    dist.barrier()  # no process returns before the summary exists
    return run.path


def epochs_loop(state: TrainState, data, val, config: TrainConfig, dist, run: RunFolder, records, log):
    """Train epoch after epoch until done, stopped early or diverged; returns (status, reason)."""
    loop, optimizer, rule = state.loop, state.optimizer, state.rule
    context = lambda: precision_context(config, state.device)  # noqa: E731
    probe_x, probe_y = data.sample(min(config.probe_batch_size, data.num_train))
    reference = rule.reference_loss(data.num_classes)
    started = time.perf_counter() - loop["wall_time_s"]
    status, reason = "ok", None
    try:
        for epoch in range(loop["epoch"], config.epochs):
            if loop["stopped_early"]:  # a resumed run that had already stopped
                break
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(config, epoch)
            lr = optimizer.param_groups[0]["lr"]
            step_evals = {s: None for s in config.eval_steps if s > loop["step"]}
            rule.start_epoch(epoch)
            state.model.train()
            t0 = time.perf_counter()
            try:
                desc = f"epoch {epoch + 1}/{config.epochs}"
                record = train_one_epoch(state, data, config, desc, dist, step_evals, reference)
            except Diverged as err:
                status, reason = "diverged", str(err)
                records += step_records(epoch, step_evals)  # the evaluations made before it diverged count
                log(f"diverged in epoch {epoch + 1}: {err}")
                break
            loop["train_time_s"] += time.perf_counter() - t0
            loop["epoch"] = epoch + 1
            records += step_records(epoch, step_evals)
            record = {"epoch": epoch + 1, "step": loop["step"], "train/lr": lr, **record}
            record.update(evaluate_epoch(state, data, val, config, context))
            if config.probe_every and (epoch + 1) % config.probe_every == 0:
                record.update(run_probes(state, probe_x, probe_y, context))
            loop["wall_time_s"] = time.perf_counter() - started
            record["time/epoch_s"] = time.perf_counter() - t0
            record["time/threads"] = torch.get_num_threads()  # a resume may change it: the epoch's own count
            records.append(record)
            loop["stopped_early"] = bool(config.patience and loop["bad_epochs"] >= config.patience)
            if dist.is_main:
                run.write_metrics(records)
                run.save_checkpoint(state.state_dict())
                # A run killed from here on keeps a summary of its last finished epoch, marked as not finished.
                write_json(run.summary, summarize(config, data, records, loop, "running", UNFINISHED))
            for k, m in sorted((k, m) for k, m in step_evals.items() if m is not None):
                log(f"step {k} (--eval-steps): test acc {m['accuracy']:.2%}")
            log(
                f"epoch {epoch + 1}/{config.epochs}  train loss {record['train/loss']:.4f} "
                f"acc {record['train/accuracy']:.2%}  test acc {record['test/accuracy']:.2%}  "
                f"({record['time/epoch_s']:.1f} s)"
            )
            if loop["stopped_early"] and epoch + 1 < config.epochs:
                log(f"early stop: no validation improvement in {config.patience} epochs")
                break
    except Exception as err:
        if dist.is_main:
            failure = {"status": "failed", "error": f"{type(err).__name__}: {err}", "epochs": loop["epoch"]}
            failure["warnings"] = list(loop.get("warnings", []))
            write_json(run.summary, {**failure, "version": __version__})
        raise
    loop["wall_time_s"] = time.perf_counter() - started
    return status, reason


#: Warnings kept in summary.json at most (then one line saying more were shown).
KEPT_WARNINGS = 20


@contextmanager
def warnings_kept(into: list[str]):
    """Every warning shown while the block runs is shown as usual and also kept in ``into`` (its category and
    text; see :func:`merged_warnings`), for summary.json: a run that was warned about (an EP net gone dead, an
    unsettled phase) must not read as a plain "ok" to whoever opens its folder later."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def keep(message, category, filename, lineno, file=None, line=None):
            into[:] = merged_warnings(into, [f"{category.__name__}: {message}"])
            show(message, category, filename, lineno, file, line)

        warnings.showwarning = keep
        yield


def merged_warnings(kept: list[str], new: list[str]) -> list[str]:
    """``kept`` plus the ``new`` warnings it lacks, one per text up to its numbers (a resumed run's "moved by 0.12"
    repeats its "moved by 0.11"), at most KEPT_WARNINGS and then one line saying that more were shown."""
    merged, seen = list(kept), {_gist(w) for w in kept}
    for warning in new:
        if _gist(warning) in seen or len(merged) > KEPT_WARNINGS:
            continue
        seen.add(_gist(warning))
        merged.append(warning if len(merged) < KEPT_WARNINGS else "more warnings were shown than are kept here")
    return merged


def _gist(warning: str) -> str:
    return re.sub(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", "#", warning)


UNFINISHED = "written after the last finished epoch; a run stopped here reads the same: --resume continues it"


def step_records(epoch: int, step_evals: dict[int, dict[str, float] | None]) -> list[dict[str, Any]]:
    """metrics.jsonl records of the evaluations at ``eval_steps`` made during epoch ``epoch`` (0-based)."""
    return [
        {"epoch": epoch + 1, "step": k, "eval": "step", "test/loss": m["loss"], "test/accuracy": m["accuracy"]}
        for k, m in sorted(step_evals.items())
        if m is not None
    ]


def summarize(
    config: TrainConfig, data: Dataset, records: list[dict], loop: dict, status: str, reason: str | None
) -> dict[str, Any]:
    """The summary.json contract; a diverged run scores chance accuracy, so a study can rank it."""
    epochs = [r for r in records if r.get("eval") != "step"]
    last = epochs[-1] if epochs else {}
    chance = 1.0 / data.num_classes
    return {
        "status": status,
        "reason": reason,
        "test_accuracy": chance if status == "diverged" else last.get("test/accuracy", chance),
        "best_test_accuracy": loop["best_test_accuracy"] if records else chance,
        "best_epoch": loop["best_epoch"],
        "train_accuracy": last.get("train/accuracy"),
        "val_accuracy": last.get("val/accuracy"),
        "test_accuracy_at_best_val": loop["test_at_best_val"],
        "stopped_early": loop["stopped_early"],
        "epochs": loop["epoch"],
        "steps": loop["step"],
        "wall_time_s": loop["wall_time_s"],
        "samples_per_s": loop["samples"] / loop["train_time_s"] if loop["train_time_s"] else None,
        "step_test_accuracy": {str(r["step"]): r["test/accuracy"] for r in records if r.get("eval") == "step"},
        "warnings": list(loop.get("warnings", [])),
        "rule": config.rule,
        "arch": config.arch,
        "dataset": config.dataset,
        "data": (config.data_source or {}).get("description"),
        "seed": config.seed,
        "version": __version__,
    }


def config_replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with some fields changed (option dicts are copied, not shared)."""
    return dataclasses.replace(
        config,
        rule_options=dict(config.rule_options),
        arch_options=dict(config.arch_options),
        dataset_options=dict(config.dataset_options),
        **changes,
    )
