"""Each rule's time per training step relative to bp, on the same MLP and batch (see `bioplausible bench -h`).

python benchmarks/step_time.py                     # 784-1000x3-10, batch 128, CPU
python benchmarks/step_time.py --device cuda --batch-size 512
"""

import argparse
import sys

from bioplausible.bench import run_bench
from bioplausible.bench_args import add_bench_arguments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    sys.exit(run_bench(parser.parse_args()))
