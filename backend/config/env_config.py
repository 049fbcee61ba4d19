"""Compatibility re-export: :class:`EnvConfig` lives beside the env it configures."""

from backend.environments.env_config import EnvConfig

__all__ = ["EnvConfig"]
