"""The quickstart: compare rules on a plain and a densely connected MLP, print a table, save a PNG.

Runs go to ``<out>/<arch>-<rule>``; rerunning the demo resumes them, so a finished demo prints again at once.
"""

from __future__ import annotations

from pathlib import Path

from .config import TrainConfig
from .data import load_dataset
from .engine import fit
from .report import markdown_table, plot_learning_curves
from .runs import load_run

# Small enough for 2 CPU cores in well under two minutes, large enough that the rules separate.
DEMO_ARCH = {"depth": 3, "width": 64, "activation": "tanh"}
DEMO_TRAIN = {"batch_size": 32, "lr": 1e-3, "seed": 0}


def run_demo(
    rules=("bp", "fa", "dfa", "usf"),
    archs=("mlp", "dense-mlp"),
    dataset="digits",
    epochs=30,
    out="runs/demo",
    data_dir=None,
    device="auto",
    threads=0,
) -> str:
    """Train every (rule, arch) pair; returns the table it printed."""
    out = Path(out)
    data = load_dataset(dataset, data_dir)
    rows, runs = [], []
    for arch in archs:
        for rule in rules:
            config = TrainConfig(
                rule=rule,
                arch=arch,
                dataset=dataset,
                data_dir=data_dir,
                epochs=epochs,
                device=device,
                threads=threads,
                out=str(out / f"{arch}-{rule}"),
                resume=True,
                arch_options=dict(DEMO_ARCH),
                **DEMO_TRAIN,
            )
            print(f"training {rule} on {arch} ...", flush=True)
            run = load_run(fit(config, data=data, quiet=True))
            runs.append(run)
            s = run["summary"]
            rows.append(
                [
                    rule,
                    arch,
                    f"{100 * s['test_accuracy']:.1f}",
                    f"{100 * s['best_test_accuracy']:.1f}",
                    f"{s['wall_time_s']:.1f}",
                    s["status"],
                ]
            )
    headers = ["rule", "arch", "test acc (%)", "best test acc (%)", "time (s)", "status"]
    table = markdown_table(headers, rows)
    png = plot_learning_curves(
        runs,
        out / "learning_curves.png",
        title=f"{dataset}: {DEMO_ARCH['depth']} hidden layers of {DEMO_ARCH['width']}, {epochs} epochs",
    )
    (out / "results.md").write_text(table + "\n")
    print()
    print(table)
    print(f"\nlearning curves: {png}\ntable: {out / 'results.md'}\nrun folders: {out}/<arch>-<rule>/")
    return table
