"""Multi-network systems trained in phases: the disentangling autoencoder and BEGAN."""

from . import began, disentangle  # noqa: F401  (registration)
from .registry import SYSTEMS, SystemSpec, get_system, register_system

__all__ = ["SYSTEMS", "SystemSpec", "get_system", "register_system"]
