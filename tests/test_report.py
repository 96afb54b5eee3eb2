"""The report: built from declarations (no rule or architecture named in the core or the report), every declared
probe drawn, byte-identical when regenerated, one writer at a time, old run folders read, the papers' numbers
matched by dataset."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from bioplausible.analysis.runs import load, load_runs
from bioplausible.engine import config_replace, fit
from bioplausible.errors import ConfigError
from bioplausible.papers import published_for
from bioplausible.registry import ARCHS, RULES
from bioplausible.report import write_report

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "bioplausible"
NAME_FREE = [SRC / "engine.py", SRC / "build.py", SRC / "cli.py", *sorted((SRC / "report").glob("*.py"))]


def names_used(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant and identifier in ``source`` (comments and docstring words aside:
    a string counts only when it IS the text, so "bp" counts and "backprop" or "usf on mlp" do not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.arg, ast.keyword)) and node.arg:  # def f(bp): ..., f(bp=1)
            found.append((node.lineno, node.arg))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
        elif isinstance(node, ast.alias):
            found += [(node.lineno, n) for n in (node.name.split(".")[-1], node.asname) if n]
    return found


@pytest.mark.parametrize("path", NAME_FREE, ids=lambda p: str(p.relative_to(SRC)))
def test_no_rule_or_architecture_is_named_in_the_core_or_the_report(path):
    registered = set(RULES.list()) | set(ARCHS.list())
    hits = [f"{path.name}:{line}: {text!r}" for line, text in names_used(path.read_text()) if text in registered]
    assert not hits, "read the declarations instead of naming these:\n" + "\n".join(hits)


def test_the_name_check_sees_strings_and_identifiers_but_not_words():
    names = {"fa", "bp", "mlp", "dense-mlp", "ep"}
    named = 'x = "fa"\nbp = 1\nf(mlp=2)\ny = "dense-mlp"\nimport z as ep\n'
    assert {text for _, text in names_used(named)} & names == names
    words = '"""the bp rule on an mlp"""\n# fa\nv = "backprop"\nw = f"{x} ep-like"\nu = "usf on dense-mlp"\n'
    assert not {text for _, text in names_used(words)} & names


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A dtp run (TP's three probes) and an fa run, 2 epochs each."""
    from bioplausible.config import TrainConfig

    folder = tmp_path_factory.mktemp("runs")
    common = {"dataset": "synthetic", "arch": "mlp", "arch_options": {"depth": 2, "width": 16}, "epochs": 2,
              "batch_size": 32, "device": "cpu", "progress": False}  # fmt: skip
    for rule in ("dtp", "fa"):
        fit(TrainConfig(**common, rule=rule, out=str(folder / rule)), quiet=True)
    return folder


def test_every_declared_probe_is_drawn_with_its_spec(two_runs):
    write_report(two_runs)
    page = (two_runs / "report.md").read_text()
    for rule in ("dtp", "fa"):
        for spec in RULES.get(rule).probes:
            assert f"## {spec.title}" in page and (two_runs / f"{spec.kind}.png").stat().st_size > 5_000
    labels = {RULES.get("dtp").describe(json.loads((two_runs / "dtp" / "config.json").read_text())["rule_options"])}
    assert all(f"| {label}" in page for label in labels)  # the declared label, e.g. "dtp (parallel)"


def test_a_regenerated_report_is_byte_identical_and_its_pngs_carry_no_metadata(two_runs, tmp_path):
    write_report(two_runs)
    files = sorted(p for p in two_runs.iterdir() if p.suffix in (".png", ".md", ".html"))
    first = {p.name: p.read_bytes() for p in files}
    assert len(first) >= 6
    write_report(two_runs)
    assert {p.name: p.read_bytes() for p in files} == first
    copy = shutil.copytree(two_runs, tmp_path / "elsewhere")  # the same runs in another folder
    write_report(copy)
    assert all((copy / name).read_bytes() == data for name, data in first.items() if name.endswith(".png"))
    png = first["learning_curves.png"]
    assert b"Software" not in png and b"tIME" not in png and b"matplotlib" not in png


def test_a_rule_has_one_colour_in_every_figure():
    from bioplausible.analysis.figures import PALETTE, rule_colour

    colours = [rule_colour(name) for name in RULES.list()]
    assert len(set(colours)) == len(colours) and set(colours) <= set(PALETTE)
    assert rule_colour("fa") == rule_colour("fa") and rule_colour("not-registered") in PALETTE


@pytest.mark.parametrize(
    "series, scale",
    [
        ([[1e-3, 1e-1], [2.0]], "log"),  # all positive: log
        ([[0.0, 1e-3], [1e-1]], "symlog"),  # zeros among them (a dead net's shift): kept on the plot
        ([[0.0, 0.0], [float("nan")]], "linear"),  # nothing positive: linear
        ([[1e-2, float("nan")], [float("inf")]], "log"),  # non-finite points do not force symlog
    ],
)
def test_log_probe_axes_keep_zero_values_on_the_plot(series, scale):
    import matplotlib.pyplot as plt

    from bioplausible.analysis.figures import _log_scale

    fig, ax = plt.subplots()
    for ys in series:
        ax.plot(range(len(ys)), ys)
    _log_scale(ax)
    assert ax.get_yscale() == scale
    if scale == "symlog":  # linear below the smallest positive value, so it and the zeros both show
        assert ax.yaxis.get_transform().linthresh == pytest.approx(1e-3)
    plt.close(fig)


def test_an_unfinished_run_of_a_search_keeps_its_settings_in_the_table(tiny_config, tmp_path, monkeypatch):
    from bioplausible import engine
    from bioplausible.report.summary import results_table

    fit(tiny_config(epochs=2, lr=1e-2, out=str(tmp_path / "a")), quiet=True)
    real, calls = engine.train_one_epoch, []

    def stopped_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", stopped_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(epochs=2, lr=3e-2, out=str(tmp_path / "b")), quiet=True)
    rows = {line.split("|")[-3].strip(): line for line in results_table(load_runs(tmp_path).runs).splitlines()[2:]}
    assert set(rows) == {"a", "b"}
    assert "lr=0.01" in rows["a"] and "lr=0.03" in rows["b"] and "running" in rows["b"]


def test_a_second_report_writer_is_refused_in_one_line(two_runs):
    with FileLock(two_runs / ".lock", thread_local=False, timeout=0), pytest.raises(ConfigError) as err:
        write_report(two_runs)
    assert "in use by another process" in str(err.value) and "\n" not in str(err.value)
    assert write_report(two_runs).exists()  # released: the next writer proceeds


def test_a_writer_told_to_wait_writes_once_the_other_is_done(two_runs):
    """What a study's worker does when another worker is writing the report: wait, then write it from the runs as
    they are then."""
    import threading

    lock = FileLock(two_runs / ".lock", thread_local=False, timeout=0)
    lock.acquire()
    (two_runs / "report.md").unlink(missing_ok=True)
    threading.Timer(0.5, lock.release).start()
    assert write_report(two_runs, wait_s=600).exists() and (two_runs / "report.md").exists()


def test_an_old_run_folder_gets_its_options_resolved_and_its_probes_inferred(tmp_path, capsys):
    """A run written before resolved configs and probes.json: its options come from today's defaults, its probes
    from the metric keys it has, with the declared specs; an unreadable folder is named with its version."""
    old = tmp_path / "old"
    old.mkdir()
    config = {"rule": "fa", "arch": "mlp", "dataset": "mnist", "rule_options": {}, "arch_options": {"depth": 2},
              "epochs": 1, "version": "0.0.1"}  # fmt: skip
    (old / "config.json").write_text(json.dumps(config))
    (old / "summary.json").write_text(json.dumps({"status": "ok", "test_accuracy": 0.9, "version": "0.0.1"}))
    record = {"epoch": 1, "test/accuracy": 0.9, "probe/feedback_angle/0": 40.0, "probe/grad_norm/0": 0.1}
    (old / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    run = load(old)
    assert run.config["rule_options"] == {"feedback_scale": 1.0, "bp_layers": [], "feedback_init": "default"}
    assert run.config["arch_options"]["depth"] == 2 and "width" in run.config["arch_options"]
    assert run.config["init"] == "default"  # a setting added since: today's default
    kinds = {spec.kind: spec for spec in run.probes}
    assert set(kinds) == {"feedback_angle", "grad_norm"} and kinds["feedback_angle"].unit == "°"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text(json.dumps({"status": "ok", "version": "0.0.1"}))
    (broken / "config.json").write_text("{not json")
    loaded = load_runs(tmp_path)
    assert [r.path.name for r in loaded.runs] == ["old"]
    [problem] = loaded.problems
    assert "broken" in problem and "bioplausible 0.0.1" in problem and "\n" not in problem
    write_report(tmp_path)
    assert problem in (tmp_path / "report.md").read_text()
    from bioplausible.cli import main

    assert main(["report", str(tmp_path)]) == 0
    assert problem in capsys.readouterr().out  # on the terminal too, not only in report.md


def cifar_config(rule: str, arch: str, num_train: int, description: str = "CIFAR-10 (JPEG q75)", **options) -> dict:
    source = {"description": description, "num_train": num_train}
    return {"rule": rule, "arch": arch, "dataset": "cifar10", "data_source": source,
            "rule_options": {"bp_layers": [], **options}, "arch_options": {}}  # fmt: skip


def test_a_published_number_is_matched_by_dataset_and_full_training_set():
    paper = published_for(cifar_config("usf", "resnet20", 50_000))
    assert paper.test_error == 10.05 and "BioTorch" in paper.source
    assert published_for(cifar_config("usf", "resnet20", 5_000)) is None  # a subset is not their setting
    assert published_for(cifar_config("usf", "resnet20", 50_000, bp_layers=["last"])) is None  # theirs: all layers
    legacy = {**cifar_config("usf", "resnet20", 0), "data_source": None, "batch_size": 128}  # no num_train recorded
    assert published_for(legacy, {"steps": 1280, "epochs": 40}) is None  # 4,096 images an epoch: a subset
    assert published_for(legacy, {"steps": 391 * 40, "epochs": 40}).test_error == 10.05
    fc = {"rule": "fa", "arch": "mlp", "dataset": "cifar10", "rule_options": {},
          "arch_options": {"depth": 3, "width": 1024, "activation": "tanh"}}  # fmt: skip
    assert published_for(fc).test_error == 41.97
    assert published_for({**fc, "dataset": "mnist"}) is None  # the MNIST rows are for 5x256
    lc = {"rule": "dtp", "arch": "lc-net", "dataset": "cifar10", "rule_options": {"schedule": "alternating"}}
    assert published_for(lc).test_error == 39.47


def test_the_results_table_shows_our_data_beside_the_papers_number(tmp_path):
    from bioplausible.analysis.runs import make_run
    from bioplausible.report.summary import results_rows

    config = cifar_config("bp", "resnet20", 50_000)
    summary = {"status": "ok", "test_accuracy": 0.9, "best_test_accuracy": 0.91, "epochs": 6, "wall_time_s": 1.0}
    table = results_rows([make_run(tmp_path, config, summary)])
    row = dict(zip(table.headers, table.rows[0]))
    assert row["data"] == "CIFAR-10 (JPEG q75)" and row["paper test err %"].startswith("8.63 (Sanfiz & Akrout")


def test_a_shorter_run_gets_the_papers_number_with_the_epochs_it_was_published_after():
    from bioplausible.papers import published_for

    config = {
        "dataset": "mnist", "arch": "energy-net", "rule": "ep", "lr": 0.015, "epochs": 50,
        "arch_options": {"hidden_sizes": [100] * 5, "topology": "layered"},
    }  # fmt: skip
    assert published_for(config) is None  # exact matching: no 50-epoch number was published
    near = published_for(config, other_epochs=True)
    assert near.test_error == 13.18 and near.source.endswith("after 100 epochs")  # 100 is nearer 50 than 10 is
    assert published_for({**config, "epochs": 12}, other_epochs=True).test_error == 31.1
    assert published_for({**config, "epochs": 10}, other_epochs=True).source.endswith("p-sweep")  # exact


def test_a_studys_compute_is_summed_per_pair_and_its_unfinished_points_projected(tmp_path):
    from bioplausible.analysis.cost import cost_table, remaining_cost

    runs = [cost_run(tmp_path, "mlp", "bp", 0, wall=100), cost_run(tmp_path, "mlp", "bp", 1, wall=300),
            cost_run(tmp_path, "mlp", "fa", 0, wall=50), cost_run(tmp_path, "mlp", "fa", 1, status="running"),
            cost_run(tmp_path, "mlp", "dtp", 0, device="cuda:0"), cost_run(tmp_path, "mlp", "kp", 0, status="failed"),
            cost_run(tmp_path, "mlp", "bp", 9, wall=None),  # a pilot off the grid, without a wall time
            cost_run(tmp_path, "dense-mlp", "bp", 0, world_size=2)]  # fmt: skip
    rows = {(r[0], r[1]): r[2:] for r in cost_table(runs).rows}
    # bp: 3 finished runs, 2 with a wall time (mean 200 s, 400 wall s = 0.11 h, 800 core s at 2 threads = 0.22 h)
    assert rows[("mlp", "bp")] == (3, "200", "0.11", "0.22", "1 / 0") and rows[("mlp", "fa")][0] == 1
    assert rows[("mlp", "dtp")][3:] == ("–", "0 / 1")  # a GPU run has no core hours
    assert rows[("dense-mlp", "bp")][3] == "0.11"  # 2 processes of 2 threads for 100 s
    assert rows[("all", "")][0] == 6 and rows[("all", "")][4] == "1 / 1"
    # the grid: 4 rules x 3 seeds on mlp. Finished: bp 0, 1; fa 0; dtp 0 (the pilot and the dense-mlp run are
    # not grid points). Left: bp 2 at 400 core s, fa 1 and 2 at 100 each = 600 core s; dtp (GPU only) and kp
    # (failed) have no CPU run to estimate from: they are named, not guessed
    spec = {"base": {}, "grid": {"rule": ["bp", "fa", "dtp", "kp"]}, "seeds": [0, 1, 2]}
    text = remaining_cost(runs, spec)
    assert text.startswith("4 of the grid's 12 runs are finished and 1 failed"), text
    assert "about 0.2 core-hours" in text and "plus those of mlp/dtp, mlp/kp" in text
    assert "has a finished CPU run yet" in remaining_cost(runs[5:6], spec)  # nothing measured: no made-up 0.0
    done = remaining_cost(runs, {"base": {}, "grid": {"rule": ["bp"]}, "seeds": [0, 1]})
    assert done == "2 of the grid's 2 runs are finished."
    # a point is matched by value: lr 1 in the spec is the 1.0 a run's config.json holds
    runs[0].config["lr"] = 1.0
    assert remaining_cost(runs, {"base": {}, "grid": {"rule": ["bp"], "lr": [1]}, "seeds": [0]}).startswith("1 of")


def cost_run(tmp_path, arch, rule, seed, wall=100.0, status="ok", device="cpu", world_size=1):
    from bioplausible.analysis.runs import make_run

    config = {"arch": arch, "rule": rule, "seed": seed, "threads": 2, "device_used": device, "world_size": world_size}
    summary = {"status": status, **({} if wall is None else {"wall_time_s": wall})}
    return make_run(tmp_path / f"{arch}-{rule}-{seed}", config, summary)


def test_a_run_recorded_before_its_dataset_options_were_is_the_same_configuration(tmp_path):
    """Runs of one study written by two versions: the older config.json lacks MNIST's expected_counts."""
    from bioplausible.analysis.results import results_from_runs
    from bioplausible.analysis.runs import make_run

    summary = {"status": "ok", "test_accuracy": 0.9}
    old = make_run(tmp_path / "a", {"dataset": "mnist", "rule": "bp", "seed": 0}, summary)
    new = make_run(tmp_path / "b", {"dataset": "mnist", "rule": "bp", "seed": 1,
                                    "dataset_options": {"expected_counts": [60000, 10000]}}, summary)  # fmt: skip
    a, b = ({k: v for k, v in r["params"].items() if k != "seed"} for r in results_from_runs([old, new]))
    assert a == b and a["dataset_options"] == {"expected_counts": [60000, 10000]}


def test_per_layer_probes_are_shaded_input_to_output_where_the_run_logged_the_models_order(tiny_config, tmp_path):
    """A run logs its per-layer probes in the model's module order and says so in probes.json; a figure shades
    them in that order. An older run (keys sorted when written) is ordered by name with digits as numbers, and its
    legend says "by name": a name order shaded as depth put a ResNet's fc first and its stem last."""
    from bioplausible.analysis.figures import ordered_layers

    config = tiny_config(rule="fa", arch_options={"depth": 11, "width": 4}, epochs=1)
    run = load(fit(config))
    layers, by_depth = ordered_layers(run, "grad_angle")
    model_order = [f"hidden.{i}" for i in range(11)] + ["out"]
    assert by_depth and [n.split("/")[-1] for n in layers] == model_order, layers
    assert sorted(layers) != layers  # the model's order is not the name order: the test can tell them apart
    old = tmp_path / "old"
    shutil.copytree(run.path, old)
    specs = json.loads((old / "probes.json").read_text())
    (old / "probes.json").write_text(json.dumps([{k: v for k, v in s.items() if k != "layer_order"} for s in specs]))
    records = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    (old / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    old_layers, old_by_depth = ordered_layers(load(old), "grad_angle")
    assert not old_by_depth and old_layers == model_order  # natural sort happens to recover this MLP's order
    write_report(old)
    assert (old / "grad_angle.png").exists()
    fit(config_replace(config, out=str(old), epochs=2, resume=True))  # resumed: its first record is still sorted
    assert not ordered_layers(load(old), "grad_angle")[1]  # so it still does not claim the model's order


def test_a_layer_whose_first_probe_value_is_null_keeps_its_place(tiny_config):
    """EP logs null angles for connections before their first nudged phase: the layer keeps its place."""
    from bioplausible.analysis.figures import ordered_layers

    run_path = fit(tiny_config(rule="fa", arch_options={"depth": 3, "width": 4}, epochs=2))
    records = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    records[0]["probe/grad_angle/hidden.0"] = None
    (run_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    layers, by_depth = ordered_layers(load(run_path), "grad_angle")
    assert by_depth and layers == ["hidden.0", "hidden.1", "hidden.2", "out"], layers


def test_a_run_folder_without_a_summary_is_named_not_dropped(tiny_config, tmp_path):
    """A folder with config.json and metrics.jsonl but no summary.json (stopped before its first summary, or copied
    in part) is left out of the report, and the report says so."""
    path = fit(tiny_config(epochs=1, out=str(tmp_path / "runs" / "kept")))
    partial = tmp_path / "runs" / "partial"
    partial.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(path / name, partial / name)
    only_config = tmp_path / "runs" / "only-config"  # a corrupt config.json alone was left out without a word
    only_config.mkdir()
    (only_config / "config.json").write_text("{")
    broken = tmp_path / "runs" / "broken-metrics"
    shutil.copytree(path, broken)
    (broken / "metrics.jsonl").write_text("not json\n")
    loaded = load_runs(tmp_path / "runs")
    assert [r.path.name for r in loaded.runs] == ["kept"]
    assert any("partial" in p and "no summary.json" in p for p in loaded.problems), loaded.problems
    assert any("only-config" in p and "no summary.json" in p for p in loaded.problems), loaded.problems
    assert any(p.startswith(f"{broken / 'metrics.jsonl'}: unreadable") for p in loaded.problems), loaded.problems


def test_valid_json_of_the_wrong_shape_is_a_named_unreadable_run_not_a_traceback(tiny_config, tmp_path):
    """A metrics line that is a number, probes.json as an object, options as a list, an accuracy as text: each
    ended the report in an AttributeError or TypeError."""
    good = fit(tiny_config(epochs=1, out=str(tmp_path / "runs" / "good")))
    damage = {
        "metrics": lambda p: (p / "metrics.jsonl").write_text((p / "metrics.jsonl").read_text() + "3\n"),
        "probes": lambda p: (p / "probes.json").write_text('{"a": 1}'),
        "options": lambda p: (p / "config.json").write_text(
            json.dumps({**json.loads((p / "config.json").read_text()), "rule_options": [1]})),
        "accuracy": lambda p: (p / "summary.json").write_text(
            json.dumps({**json.loads((p / "summary.json").read_text()), "test_accuracy": "high"})),
    }  # fmt: skip
    for name, spoil in damage.items():
        shutil.copytree(good, tmp_path / "runs" / name)
        spoil(tmp_path / "runs" / name)
    loaded = load_runs(tmp_path / "runs")
    assert [r.path.name for r in loaded.runs] == ["good"]
    assert len(loaded.problems) == 4 and all("unreadable" in p for p in loaded.problems), loaded.problems
    write_report(tmp_path / "runs")


def test_an_epoch_axis_has_whole_number_ticks_even_for_a_one_epoch_run(tmp_path):
    from bioplausible.analysis.figures import plt, save_figure

    fig, ax = plt.subplots()
    ax.plot([1], [0.5], marker=".")
    ax.set(xlabel="epoch")
    save_figure(fig, tmp_path / "one.png")
    ticks = ax.get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks)


def test_the_learning_curves_mean_angle_leaves_out_layers_trained_by_the_gradient_itself():
    """FA's output layer is updated by its true gradient (0° in every epoch): averaged in, it would show hidden
    layers at 74° and 85° as 53°. A run whose every layer is at 0° (bp) keeps its mean of 0."""
    from bioplausible.analysis.figures import mean_over_layers
    from bioplausible.analysis.runs import Run

    def run(angles: dict[str, list[float]]) -> Run:
        metrics = [{"epoch": e + 1, **{f"probe/grad_angle/{n}": v[e] for n, v in angles.items()}} for e in range(2)]
        return Run(path=Path("."), config={"rule": "fa"}, summary={}, metrics=metrics)

    fa = run({"hidden.0": [74.0, 76.0], "hidden.1": [85.0, 83.0], "out": [0.0, 3e-6]})
    assert mean_over_layers(fa, "grad_angle") == pytest.approx([79.5, 79.5])
    assert mean_over_layers(run({"hidden.0": [0.0, 0.0], "out": [0.0, 0.0]}), "grad_angle") == [0.0, 0.0]


def test_report_on_a_missing_path_or_a_file_says_which(tmp_path):
    from bioplausible.cli import main

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        write_report(tmp_path / "afile")
    assert main(["report", str(tmp_path / "nothing")]) == 2
