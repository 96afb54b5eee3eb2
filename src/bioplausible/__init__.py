"""bioplausible: train and compare biologically plausible learning rules on architectures with and without
skip connections, and see why they work or fail."""

__version__ = "0.1.0"

from . import archs, data, rules  # noqa: E402  (importing registers every rule, architecture and dataset)
from .convert import convert  # noqa: E402
from .errors import BioplausibleError  # noqa: E402
from .registry import ARCHS, DATASETS, RULES  # noqa: E402

__all__ = ["ARCHS", "DATASETS", "RULES", "BioplausibleError", "__version__", "archs", "convert", "data", "rules"]
