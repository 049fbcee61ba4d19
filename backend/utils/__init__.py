"""Small helpers shared across packages: run provenance (code, packages, data hashes)."""

from backend.utils.provenance import (
    PROVENANCE_PACKAGES,
    collect_provenance,
    data_range,
    git_state,
    hash_bars,
    package_versions,
)

__all__ = [
    "PROVENANCE_PACKAGES",
    "collect_provenance",
    "data_range",
    "git_state",
    "hash_bars",
    "package_versions",
]
