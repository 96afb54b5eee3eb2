"""The ``bioplausible bench`` flags, apart from the benchmark itself so that ``--help`` needs no torch."""

from __future__ import annotations

import argparse


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", default="bp,fa,usf,frsf,brsf,dfa", help="comma-separated rules (bp is the reference)")
    p.add_argument("--arch", default="mlp")
    p.add_argument("--input-shape", default="784", help="one sample's shape, e.g. 784 or 3,32,32")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--arch-options", default="{}", help="architecture options as JSON, e.g. '{\"depth\": 3}'")
    p.add_argument("--depth", type=int, default=3, help="for archs with a depth option")
    p.add_argument("--width", type=int, default=1000, help="for archs with a width option")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument(
        "--precision", default="fp32", help="fp32, bf16 or fp16; several (fp32,bf16) compare them, each rule at each"
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last images and conv weights")
    p.add_argument(
        "--both-formats", action="store_true", help="time contiguous and channels-last side by side (conv nets)"
    )
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds; the median is reported")
    p.add_argument(
        "--steps",
        type=int,
        default=3,
        help="steps timed per rule per round (few: rules then see the same machine state)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: ratios, not speed)")
    p.add_argument("--json", help="also write the times and ratios to this JSON file")
