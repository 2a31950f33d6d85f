"""auto_build=True builds the worker image at the first submit, never in the constructor."""

from __future__ import annotations

from typing import Any

import pytest

from starburst_executor import FargateExecutor, ImageError
from starburst_executor import image as image_module


def test_image_is_built_at_first_submit_not_in_init(mocker: Any) -> None:
    ensure = mocker.patch.object(
        image_module, "ensure_image",
        side_effect=ImageError("no Docker daemon answers: start one with `dockerd &`"))
    ex = FargateExecutor(backend="docker", auto_build=True)
    assert ensure.call_count == 0
    with pytest.raises(ImageError, match="dockerd"):
        ex.submit(abs, -1)
    assert ensure.call_count == 1
    assert ensure.call_args.kwargs.get("push") is False  # docker: build for the local daemon
    ex.shutdown()


def test_built_image_is_used_and_built_once(mocker: Any, capsys: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image", return_value="worker:abc123")
    ex = FargateExecutor(backend="docker", auto_build=True)
    ex._build_image()
    ex._build_image()
    assert ensure.call_count == 1
    assert ex.config.image == "worker:abc123"
    assert "building the worker image" in capsys.readouterr().err
    ex.shutdown()


def test_configured_image_is_not_rebuilt(mocker: Any) -> None:
    ensure = mocker.patch.object(image_module, "ensure_image")
    ex = FargateExecutor(backend="docker", auto_build=True, image="mine:1")
    assert not ex._needs_image
    ex.shutdown()
    assert ensure.call_count == 0
