"""One exception type for every user-facing failure.

The CLI prints ``str(err)`` on one line and exits non-zero; the API maps it to a 4xx.
Messages name the item (title id, file, field) and the reason.
"""
import contextlib


class GenreFusionError(Exception):
    """A problem with the user's input, data, config or model bundle (never a bug)."""

    exit_code = 2


class BadInput(GenreFusionError):
    """Bad poster, plot, request field or file."""


class DatasetError(GenreFusionError):
    """A dataset folder or one of its records cannot be used."""


class ConfigError(GenreFusionError):
    """Unknown key, wrong type or out-of-range value in a config."""


class BundleError(GenreFusionError):
    """A model bundle / checkpoint is missing, truncated, tampered or inconsistent."""


@contextlib.contextmanager
def one_line_errors():
    """For scripts on the package (the benchmarks), as the CLI does: a ``GenreFusionError`` (a bad run folder, a
    damaged bundle, a dataset gone) ends the process with one ``error: ...`` line instead of a traceback."""
    try:
        yield
    except GenreFusionError as err:
        raise SystemExit(f"error: {err}") from None
