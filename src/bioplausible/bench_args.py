"""The ``bioplausible bench`` flags, apart from the benchmark itself so that ``--help`` needs no torch."""

from __future__ import annotations

import argparse
import json


def at_least(low: int):
    """An argparse type: an integer >= ``low``, else one line saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def input_shape(text: str) -> str:
    """One sample's shape as given (``784`` or ``3,32,32``), each size a positive integer."""
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 784 or 3,32,32, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"every size must be at least 1, got {text}")
    return text


def json_object(text: str) -> str:
    """Architecture options as a JSON object, checked here so that a typo is one line, not a traceback."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"depth\": 3}}', got {text!r}")
    return text


def names(choices: tuple[str, ...] = ()):
    """An argparse type: a comma-separated list, not empty, without repeats (and within ``choices`` if given)."""

    def parse(text: str) -> str:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        repeated = sorted({t for t in items if items.count(t) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given twice")
        unknown = [t for t in items if choices and t not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{', '.join(unknown)}: choose from {', '.join(choices)}")
        return ",".join(items)

    return parse


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules", type=names(), default="bp,fa,usf,frsf,brsf,dfa", help="comma-separated rules (bp is the reference)"
    )
    p.add_argument("--arch", default="mlp")
    p.add_argument("--input-shape", type=input_shape, default="784", help="one sample's shape, e.g. 784 or 3,32,32")
    p.add_argument("--classes", type=at_least(2), default=10)
    p.add_argument(
        "--arch-options", type=json_object, default="{}", help="architecture options as JSON, e.g. '{\"depth\": 3}'"
    )
    p.add_argument("--depth", type=at_least(1), default=3, help="for archs with a depth option")
    p.add_argument("--width", type=at_least(1), default=1000, help="for archs with a width option")
    p.add_argument("--batch-size", type=at_least(1), default=128)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument(
        "--precision",
        type=names(("fp32", "bf16", "fp16")),
        default="fp32",
        help="fp32, bf16 or fp16; several (fp32,bf16) compare them, each rule at each",
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last images and conv weights")
    p.add_argument(
        "--both-formats", action="store_true", help="time contiguous and channels-last side by side (conv nets)"
    )
    p.add_argument("--rounds", type=at_least(1), default=60, help="interleaved rounds; the median is reported")
    p.add_argument(
        "--steps",
        type=at_least(1),
        default=3,
        help="steps timed per rule per round (few: rules then see the same machine state)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=at_least(1), default=1, help="torch CPU threads (default 1: ratios, not speed)")
    p.add_argument("--json", help="also write the times and ratios to this JSON file")
