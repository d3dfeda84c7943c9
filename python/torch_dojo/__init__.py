"""torch-dojo: a ``torch.compile`` backend ("dojo") for a simulated Tesla Dojo mesh.

    import torch, torch_dojo
    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1"})
    compiled(x)
    torch_dojo.report()          # a table; in Jupyter with a utilisation heatmap and timeline
"""

# torch must be imported before the native module: handing a Rust-made tensor to Python
# before torch is initialised segfaults.
import torch  # noqa: F401  (import order matters)

from . import _native
from ._native import CapacityError, DeviceError, DojoError, InvalidInputError, UnsupportedOpError
from .backend import register as _register
from . import cache, cfloat
from .logs import configure_from_env as _configure_logging
from .report import Report, format_report, last_report, report

__version__: str = _native.__version__

__all__ = [
    "DojoError",
    "UnsupportedOpError",
    "InvalidInputError",
    "CapacityError",
    "DeviceError",
    "report",
    "Report",
    "last_report",
    "format_report",
    "cache",
    "cfloat",
    "__version__",
]

_register()
_configure_logging()
