"""The CNN family: one file per family, each variant registered by name."""

from edgecnn.archs.registry import ArchSpec, create, get_arch, list_archs, register

__all__ = ["ArchSpec", "create", "get_arch", "list_archs", "register"]
