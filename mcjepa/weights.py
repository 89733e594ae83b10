"""Compatibility module: the release API lives in :mod:`mcjepa.release` (one module per concept);
this re-exports its public names so that ``from mcjepa.weights import load_model`` keeps working."""

from .release import *  # noqa: F403
from .release import __all__  # noqa: F401
