from __future__ import annotations

import pkgutil
import subprocess
import sys

import starburst_executor


def test_all_names_resolve_and_are_complete() -> None:
    for name in starburst_executor.__all__:
        assert getattr(starburst_executor, name) is not None
    public = {n for n in dir(starburst_executor) if not n.startswith("_")}
    # Submodules become attributes once imported; the worker image folder is mapped in.
    modules = {m.name for m in pkgutil.iter_modules(starburst_executor.__path__)}
    modules.add("worker_image")
    assert public - modules - {"annotations", "importlib", "TYPE_CHECKING", "Any"} <= set(
        starburst_executor.__all__)


def test_worker_does_not_import_the_executor() -> None:
    code = ("import sys, starburst_executor.worker; "
            "print('starburst_executor.executor' in sys.modules, 'boto3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_executor_constructs_without_network_or_workers() -> None:
    from starburst_executor import FargateExecutor

    ex = FargateExecutor(max_workers=3, backend="local")
    assert ex.max_workers == 3
    assert ex.usage().tasks_launched == 0
    ex.shutdown()
