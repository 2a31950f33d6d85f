"""Shared test settings: every test runs without the developer's config file or STARBURST_*
variables, and with a time limit (pytest-timeout, see pyproject.toml)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("STARBURST_")}
    for key in saved:
        del os.environ[key]
    os.environ["STARBURST_CONFIG"] = str(tmp_path_factory.getbasetemp() / "no-config.json")
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("STARBURST_")]:
            del os.environ[key]
        os.environ.update(saved)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A path for a test's own config file, already set as STARBURST_CONFIG."""
    path = tmp_path / "config.json"
    os.environ["STARBURST_CONFIG"] = str(path)
    return path
