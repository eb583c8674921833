"""Errors shared across modules."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration that cannot work; the message names the flag and the fix."""
