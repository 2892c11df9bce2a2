"""Calls into the user's code (forward, loss, optimizer, scheduler, collate, Dataset) and what their
failures become: a ``RecipeError`` (an ``InputError``) that says what failed, in which run and at
which step, and points at the line of the user's file where it failed.

Everything the probes do around these calls is lossdoctor's own; a failure there is lossdoctor's
bug and is reported as such (``lossdoctor.internal``), never blamed on the recipe.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator

from ..errors import InputError

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecipeError(InputError):
    """The user's recipe failed while lossdoctor ran it: what, where (file:line), and the cause."""


def _library_path(filename: str) -> bool:
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIR + os.sep):
        return True
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts or path.startswith(sys.base_prefix + os.sep) \
        or filename.startswith("<")


def user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the deepest frame of the traceback that is neither lossdoctor's nor an
    installed library's: the line of the user's code that raised (None when there is none)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if not _library_path(frame.filename):
            found = f"{frame.filename}:{frame.lineno}"
    return found


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 300:
        first = first[:300] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# Dtype mismatches users meet when their data and their model disagree, and what to do about them.
DTYPE_HINTS = (
    (("Long", "Int"), ("Float", "Half", "BFloat16", "Double"),
     "integer inputs reached a layer that expects floating point: cast features with .float(), or feed token "
     "ids and category codes through an nn.Embedding"),
    (("Double",), ("Float", "Half", "BFloat16"),
     "float64 data met a float32 model (numpy arrays are float64 by default): cast the data with .float()"),
)


def dtype_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if "dtype" not in text and "scalar type" not in text and "same type" not in text:
        return None
    for first, second, hint in DTYPE_HINTS:
        if any(a in text for a in first) and any(b in text for b in second):
            return hint
    return None


@contextlib.contextmanager
def user_code(what: str, hint: str | None = None) -> Iterator[None]:
    """Run the user's code; turn any exception it raises into a ``RecipeError`` naming ``what``.

    ``what`` says which call and in which run (e.g. "the model's forward, step 7 of the baseline run,
    train mode"); ``hint`` what was expected. SystemExit and KeyboardInterrupt are the user's too:
    a ``sys.exit()`` inside their code becomes the same error, Ctrl-C stays Ctrl-C.
    """
    try:
        yield
    except RecipeError:
        raise
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as exc:
        where = user_frame(exc)
        message = f"recipe: {what} raised {describe(exc)}" if not isinstance(exc, SystemExit) else \
            f"recipe: {what} called sys.exit({exc.code!r})"
        if where:
            message += f" (at {where})"
        hint = dtype_hint(exc) or hint
        if hint:
            message += f"; {hint}"
        raise RecipeError(message) from exc
