"""lossdoctor: why won't my loss converge, and what do I change?

The public API, nothing else. Names are imported on first use so that ``import lossdoctor`` stays
light and never imports Lightning, transformers or Keras.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Finding": "lossdoctor.findings",
    "Report": "lossdoctor.findings",
    "Event": "lossdoctor.findings",
    "RuledOut": "lossdoctor.findings",
    "Curves": "lossdoctor.evidence",
    "Series": "lossdoctor.evidence",
    "LossDoctorError": "lossdoctor.errors",
    "LogFormatError": "lossdoctor.errors",
    "InputError": "lossdoctor.errors",
    "CODES": "lossdoctor.codes",
    "VERDICTS": "lossdoctor.codes",
    "diagnose": "lossdoctor._diagnose",
    "watch": "lossdoctor.monitor",
    "check_model": "lossdoctor.model",
    "check_data": "lossdoctor.data",
    "GroupNormalizer": "lossdoctor.data.normalize",
    "checkup": "lossdoctor._checkup",
}

_SUBPACKAGES = ("model", "data", "monitor", "probes", "logs", "report", "integrations", "curves", "codes", "findings")

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        try:
            module = import_module(_EXPORTS[name])
        except ModuleNotFoundError as exc:  # the log path runs without torch; watch, checkup, check_model need it
            if exc.name != "torch":
                raise
            raise ModuleNotFoundError(f"lossdoctor.{name} needs torch: pip install 'lossdoctor[torch]'",
                                      name="torch") from None
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:  # `lossdoctor.model.apply_init(...)` after a plain `import lossdoctor`
        return import_module(f"lossdoctor.{name}")
    raise AttributeError(f"module 'lossdoctor' has no attribute {name!r}")


def __dir__():
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs only
    from ._checkup import checkup
    from .codes import CODES, VERDICTS
    from .data import check_data
    from .data.normalize import GroupNormalizer
    from ._diagnose import diagnose
    from .errors import InputError, LogFormatError, LossDoctorError
    from .evidence import Curves, Series
    from .findings import Event, Finding, Report, RuledOut
    from .model import check_model
    from .monitor import watch
