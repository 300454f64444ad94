"""The CNN family: one file per family, each variant registered by name."""

from edgecnn.archs.registry import ArchSpec, Built, create, get_arch, list_archs, register

__all__ = ["ArchSpec", "Built", "create", "get_arch", "list_archs", "register"]
