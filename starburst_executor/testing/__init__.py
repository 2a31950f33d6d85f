"""Helpers for testing code that uses starburst-executor without AWS.

* :class:`MotoServer` runs a moto server on 127.0.0.1 and points boto3 at it.
"""

from __future__ import annotations

from .moto_server import MotoServer

__all__ = ["MotoServer"]
