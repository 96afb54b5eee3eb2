"""The training loop: ``fit(config) -> run folder``.

One explicit loop, no callbacks: for each epoch, train (``rule.step`` fills ``.grad``, the optimizer applies it),
evaluate, probe, log, checkpoint. Divergence ends the run as a result (``status: diverged``), not a crash; a
killed run resumes from its last checkpoint and ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import __version__
from .archs import create_arch
from .archs.init import initialize
from .config import TrainConfig
from .data import Dataset, load_dataset
from .distributed import SINGLE, Distributed, init_distributed
from .errors import ConfigError
from .probes import alignment_probes
from .rules import Rule, create_rule
from .runs import RunFolder, read_json, write_json

# Fields that may change when a run is resumed: where and how fast it runs, not what it computes.
RESUMABLE_CHANGES = {
    "resume",
    "out",
    "device",
    "epochs",
    "progress",
    "threads",
    "data_dir",
    "download",
    "eval_batch_size",
}
CHECK_EVERY = 25  # steps between divergence checks (each check waits for the device)


class Diverged(Exception):
    """The training loss became NaN/inf or exploded."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """cpu, or this process's GPU (``local_rank`` under torchrun); auto picks cuda when there is one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but PyTorch sees no CUDA device; use --device cpu (or auto)")
    return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_out(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.dataset}-{config.arch}-{config.rule}-s{config.seed}-{stamp}"


def open_run_folder(config: TrainConfig) -> tuple[RunFolder, bool]:
    """The run folder, and whether we resume in it; refuses to overwrite a run or resume a different one."""
    if config.resume and not config.out:
        raise ConfigError("--resume needs --out: the folder of the run to continue")
    run = RunFolder(config.out or default_out(config))
    if not run.holds_run():
        run.create()
        return run, False
    if not config.resume:
        raise ConfigError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")
    saved = read_json(run.config)
    mine = json.loads(json.dumps(config.to_dict()))  # as JSON sees it: tuples become lists
    differ = [k for k in mine if k not in RESUMABLE_CHANGES and saved.get(k) != mine[k]]
    if differ:
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, given {mine[k]!r}" for k in differ)
        raise ConfigError(f"cannot resume {run.path} with different settings ({details})")
    return run, run.checkpoint.exists()


@torch.no_grad()
def materialize(model: nn.Module, x: torch.Tensor) -> None:
    """One forward pass in eval mode, so state drawn on first use (DFA's B for convolutions) exists before a
    checkpoint is loaded into it or an optimizer is built."""
    was_training = model.training
    model.eval()
    model(x)
    model.train(was_training)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(
        params,
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


def save_checkpoint(run: RunFolder, model, optimizer, rule, scheduler, state, generator, device) -> None:
    """Everything needed to continue bit-for-bit: weights, optimizer and rule state, and every RNG stream."""
    run.save_checkpoint(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rule": rule.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "state": state,
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": generator.get_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }
    )


def restore_checkpoint(run: RunFolder, model, optimizer, rule, scheduler, generator, device) -> dict[str, Any]:
    """Load what ``save_checkpoint`` wrote into the live objects; returns the loop state."""
    ckpt = run.load_checkpoint(map_location=device)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    rule.load_state_dict(ckpt["rule"])
    if scheduler is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["shuffle"])
    if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
    return ckpt["state"]


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    """Stepped once per epoch, so its state is whole at every checkpoint; None for a constant rate."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, batches) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over (x, y) batches, in eval mode."""
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    for x, y in batches:
        out = model(x)
        loss += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(-1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    return {"loss": loss / count, "accuracy": correct / count}


def evaluate_epoch(model, rule, data: Dataset, val, config: TrainConfig, state: dict[str, Any]) -> dict[str, float]:
    """Test (and validation) metrics after an epoch; updates the best-so-far and early-stopping bookkeeping."""
    test = evaluate(model, rule.loss_fn, data.test_batches(config.eval_batch_size))
    record = {"test/loss": test["loss"], "test/accuracy": test["accuracy"]}
    if test["accuracy"] > state["best_test_accuracy"]:
        state["best_test_accuracy"], state["best_epoch"] = test["accuracy"], state["epoch"]
    if val is not None:
        v = evaluate(model, rule.loss_fn, tensor_batches(*val, config.eval_batch_size))
        record.update({"val/loss": v["loss"], "val/accuracy": v["accuracy"]})
        if v["accuracy"] > state["best_val_accuracy"]:
            state.update(best_val_accuracy=v["accuracy"], test_at_best_val=test["accuracy"], bad_epochs=0)
        else:
            state["bad_epochs"] += 1
    return record


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size))


def train_one_epoch(
    model: nn.Module,
    rule: Rule,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    config: TrainConfig,
    state: dict[str, Any],
    generator: torch.Generator,
    desc: str,
    dist: Distributed = SINGLE,
    step_evals: dict[int, dict[str, float] | None] | None = None,
) -> dict[str, float]:
    """One pass over the shuffled training set; returns the epoch's mean train metrics. Raises Diverged.

    ``step_evals`` maps global steps to None; at each of them reached in this epoch the test metrics are
    evaluated (no random stream is touched, so the run continues exactly as without them) and stored there.
    """
    step_evals = {} if step_evals is None else step_evals
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    indexed = getattr(rule, "wants_index", False)  # rules with per-example state (EP's persistent states)
    batches = data.train_batches(config.batch_size, generator, dist.rank, dist.world_size, with_index=indexed)
    total = batches_per_epoch(data, config)
    if config.max_steps:  # the last epoch of a step budget stops where the budget ends
        total = min(total, config.max_steps - state["step"])
    if total < math.ceil(data.num_train / config.batch_size):
        batches = itertools.islice(batches, total)
    bar = tqdm(batches, total=total, desc=desc, leave=False, disable=config.progress is False or None, file=sys.stderr)
    for i, (x, y, *index) in enumerate(bar):
        optimizer.zero_grad(set_to_none=True)
        metrics = rule.step(model, x, y, index=index[0]) if indexed else rule.step(model, x, y)
        dist.average_gradients(model)  # between rule.step and optimizer.step: every rule trains data-parallel
        optimizer.step()
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v.detach() * len(y)
        seen += len(y)
        state["step"] += 1
        state["samples"] += len(y) * dist.world_size
        if state["step"] in step_evals:
            step_evals[state["step"]] = evaluate(model, rule.loss_fn, data.test_batches(config.eval_batch_size))
        if i % CHECK_EVERY == 0 or i == total - 1:
            loss = dist.mean(metrics["loss"]).item()  # all processes agree on divergence
            state["initial_loss"] = state["initial_loss"] or loss
            if not math.isfinite(loss) or loss > config.diverge_factor * max(state["initial_loss"], 1e-3):
                raise Diverged(f"loss {loss:.4g} at step {state['step']} (initial {state['initial_loss']:.4g})")
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    means = {f"train/{k}": dist.mean(v / seen).item() for k, v in sums.items()}
    if not math.isfinite(means["train/loss"]):
        raise Diverged(f"mean train loss {means['train/loss']} in epoch")
    return means


def batches_per_epoch(data: Dataset, config: TrainConfig) -> int:
    """Optimizer steps in one full epoch (fewer with ``max_batches``)."""
    total = math.ceil(data.num_train / config.batch_size)
    return min(total, config.max_batches) if config.max_batches else total


def planned_epochs(data: Dataset, config: TrainConfig) -> int:
    """The number of epochs to train: ``epochs``, or as many as a ``max_steps`` budget needs."""
    if config.max_steps:
        return math.ceil(config.max_steps / batches_per_epoch(data, config))
    return config.epochs


def fit(config: TrainConfig, data: Dataset | None = None, quiet: bool = False) -> Path:
    """Train ``config.rule`` on ``config.arch`` and ``config.dataset``; returns the run folder.

    Args:
        config: every setting of the run (see ``TrainConfig``).
        data: an already loaded dataset (saves reloading it for many runs); default: load ``config.dataset``.
        quiet: print no per-epoch line.
    """
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = init_distributed(config.device)
    device = resolve_device(config.device, dist.local_rank)
    run, resuming = open_run_folder(config)
    dist.barrier()  # every process has looked at the folder before the main one writes to it
    quiet = quiet or not dist.is_main
    log = (lambda *a: None) if quiet else (lambda msg: tqdm.write(msg, file=sys.stderr))

    data = data if data is not None else load_dataset(config.dataset, config.data_dir, download=config.download)
    if not config.augment and getattr(data, "augment", None) is not None:
        data = copy.copy(data)  # the caller's dataset keeps its augmentation
        data.augment = None
    if config.max_steps:  # resolved before anything reads the epoch count (the cosine schedule's length)
        config = config_replace(config, epochs=planned_epochs(data, config))
    seed_everything(config.seed)
    val = None
    if config.val_fraction > 0 or config.patience > 0:
        data, val = data.split_validation(config.val_fraction or 0.1, seed=config.seed)
        val = tuple(t.to(device) for t in val)
    data = data.to(device)
    model = create_arch(config.arch, data.input_shape, data.num_classes, **config.arch_options)
    model = initialize(model, config.init).to(device)
    rule = create_rule(config.rule, loss=config.loss, **config.rule_options)
    model = rule.prepare(model)
    materialize(model, data.sample(2)[0])
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    state = {
        "epoch": 0,
        "step": 0,
        "samples": 0,
        "initial_loss": None,
        "train_time_s": 0.0,
        "wall_time_s": 0.0,
        "best_test_accuracy": 0.0,
        "best_epoch": 0,
        "best_val_accuracy": -1.0,
        "test_at_best_val": None,
        "bad_epochs": 0,
        "stopped_early": False,
    }
    records: list[dict[str, Any]] = []
    if resuming:
        state = restore_checkpoint(run, model, optimizer, rule, scheduler, generator, device)
        records = [r for r in run.read_metrics() if r["epoch"] <= state["epoch"]]
        log(f"resuming {run.path} after epoch {state['epoch']}")
    if dist.is_main:
        write_json(
            run.config,
            {
                **config.to_dict(),
                "version": __version__,
                "device_used": str(device),
                "world_size": dist.world_size,
                "out": str(run.path),
            },
        )

    probe_x, probe_y = data.sample(min(config.probe_batch_size, data.num_train))
    status, reason = "ok", None
    started = time.perf_counter() - state["wall_time_s"]
    try:
        for epoch in range(state["epoch"], config.epochs):
            if state["stopped_early"]:  # a resumed run that had already stopped
                break
            step_evals = {s: None for s in config.eval_steps if s > state["step"]}
            rule.start_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trains with
            model.train()
            t0 = time.perf_counter()
            try:
                record = train_one_epoch(
                    model,
                    rule,
                    optimizer,
                    data,
                    config,
                    state,
                    generator,
                    desc=f"epoch {epoch + 1}/{config.epochs}",
                    dist=dist,
                    step_evals=step_evals,
                )
            except Diverged as err:
                status, reason = "diverged", str(err)
                log(f"diverged in epoch {epoch + 1}: {err}")
                break
            state["train_time_s"] += time.perf_counter() - t0
            if scheduler is not None:
                scheduler.step()
            state["epoch"] = epoch + 1
            records += [
                {"epoch": epoch + 1, "step": k, "eval": "step", "test/loss": m["loss"], "test/accuracy": m["accuracy"]}
                for k, m in sorted(step_evals.items())
                if m is not None
            ]
            record = {"epoch": epoch + 1, "step": state["step"], "train/lr": lr, **record}
            record.update(evaluate_epoch(model, rule, data, val, config, state))
            if config.probe_every and (epoch + 1) % config.probe_every == 0:
                record.update(alignment_probes(model, rule, probe_x, probe_y))
                record.update(rule.probe(model, probe_x, probe_y))
            state["wall_time_s"] = time.perf_counter() - started
            record["time/epoch_s"] = time.perf_counter() - t0
            records.append(record)
            state["stopped_early"] = bool(config.patience and state["bad_epochs"] >= config.patience)
            if dist.is_main:
                run.write_metrics(records)
                save_checkpoint(run, model, optimizer, rule, scheduler, state, generator, device)
            log(
                f"epoch {epoch + 1}/{config.epochs}  train loss {record['train/loss']:.4f} "
                f"acc {record['train/accuracy']:.2%}  test acc {record['test/accuracy']:.2%}  "
                f"({record['time/epoch_s']:.1f} s)"
            )
            if state["stopped_early"]:
                log(f"early stop: no validation improvement in {config.patience} epochs")
                break
    except Exception as err:
        if not dist.is_main:
            raise
        write_json(
            run.summary,
            {
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "epochs": state["epoch"],
                "version": __version__,
            },
        )
        raise
    if dist.is_main:
        write_json(run.summary, summarize(config, data, records, state, status, reason, time.perf_counter() - started))
    dist.barrier()  # no process returns before the summary exists
    return run.path


def summarize(
    config: TrainConfig,
    data: Dataset,
    records: list[dict],
    state: dict,
    status: str,
    reason: str | None,
    wall_time_s: float,
) -> dict[str, Any]:
    """The summary.json contract; a diverged run scores chance accuracy, so a study can rank it."""
    epochs = [r for r in records if r.get("eval") != "step"]
    last = epochs[-1] if epochs else {}
    chance = 1.0 / data.num_classes
    return {
        "status": status,
        "reason": reason,
        "test_accuracy": chance if status == "diverged" else last.get("test/accuracy", chance),
        "best_test_accuracy": state["best_test_accuracy"] if records else chance,
        "best_epoch": state["best_epoch"],
        "train_accuracy": last.get("train/accuracy"),
        "val_accuracy": last.get("val/accuracy"),
        "test_accuracy_at_best_val": state["test_at_best_val"],
        "stopped_early": state["stopped_early"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "wall_time_s": wall_time_s,
        "samples_per_s": state["samples"] / state["train_time_s"] if state["train_time_s"] else None,
        "step_test_accuracy": {str(r["step"]): r["test/accuracy"] for r in records if r.get("eval") == "step"},
        "rule": config.rule,
        "arch": config.arch,
        "dataset": config.dataset,
        "seed": config.seed,
        "version": __version__,
    }


def config_replace(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with some fields changed (option dicts are copied, not shared)."""
    return dataclasses.replace(
        config, rule_options=dict(config.rule_options), arch_options=dict(config.arch_options), **changes
    )
