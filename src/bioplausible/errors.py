"""User-facing errors.

Every problem a user can cause (a bad name, a missing file, an option out of range) raises a subclass of
:class:`BioplausibleError` whose message names the problem and the fix. The CLI prints such errors as one line
and exits non-zero; anything else is a bug and keeps its traceback.
"""


class BioplausibleError(Exception):
    """A problem with the user's input, reported without a traceback."""


class ConfigError(BioplausibleError, ValueError):
    """A setting is out of range or does not fit the rule, architecture or dataset."""


class UnknownNameError(BioplausibleError, KeyError):
    """A name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(BioplausibleError, OSError):
    """A dataset that is missing, incomplete or corrupt; the message names the files and where to put them."""


class IncompatibleError(BioplausibleError, TypeError):
    """A rule that cannot train an architecture; the message says why."""


class FolderBusy(ConfigError):
    """A run or study folder whose lock another process holds (a run training in it, or a report being written)."""
