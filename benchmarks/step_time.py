"""Each rule's time per training step relative to bp, on the same MLP and batch (see `bioplausible bench -h`).

python benchmarks/step_time.py                     # 784-1000x3-10, batch 128, CPU
python benchmarks/step_time.py --device cuda --batch-size 512
"""

import sys

from bioplausible.bench import main

if __name__ == "__main__":
    sys.exit(main())
