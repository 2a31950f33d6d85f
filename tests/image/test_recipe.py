"""Environment capture, the content-hash tag, the Dockerfile and the worker wheel: pure tests."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from importlib.metadata import PathDistribution
from pathlib import Path

import cloudpickle
import pytest

from starburst_executor import image
from starburst_executor.image import daemon, wheels
from starburst_executor.errors import ConfigError, StarburstError

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _env(**pins: str) -> image.Environment:
    return image.Environment(
        python_version="3.11.7",
        pins=tuple(sorted(pins.items())),
        package_version="0.1.0",
        package_digest="d" * 64,
    )


def _recipe(env: image.Environment | None = None, **kw: object) -> image.ImageRecipe:
    return image.ImageRecipe(env or _env(cloudpickle="3.1.3", numpy="2.4.6"),
                             base_image="python:3.11-slim", **kw)  # type: ignore[arg-type]


def _dist(tmp_path: Path, name: str, version: str, direct_url: dict | None = None
          ) -> PathDistribution:
    info = tmp_path / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return PathDistribution(info)


def test_capture_pins_every_distribution_exactly() -> None:
    env = image.capture_environment()
    pins = dict(env.pins)
    assert pins["cloudpickle"] == cloudpickle.__version__
    assert "starburst-executor" not in pins  # shipped as its own wheel, from its sources
    assert env.python_minor == "%d.%d" % sys.version_info[:2]
    assert list(env.pins) == sorted(env.pins)
    assert len(env.package_digest) == 64 and env.package_version


def test_capture_reads_names_first_copy_wins_and_local_directories(tmp_path: Path) -> None:
    dists = [
        _dist(tmp_path / "a", "Foo_Bar", "1.0"),
        _dist(tmp_path / "b", "foo-bar", "2.0"),  # shadowed, as for import
        _dist(tmp_path / "c", "mylib", "0.3", {"url": "file:///src/my%20lib", "dir_info": {"editable": True}}),
        _dist(tmp_path / "d", "fromurl", "1.1", {"url": "https://x/y.whl", "archive_info": {}}),
        _dist(tmp_path / "e", "starburst_executor", "0.1.0"),
    ]
    env = image.capture_environment(dists, python_version="3.12.1", exclude=["skipme"])
    assert env.pins == (("foo-bar", "1.0"), ("fromurl", "1.1"))
    assert env.local == (("mylib", "0.3", "/src/my lib"),)
    assert env.python_minor == "3.12"


def test_tag_is_stable_and_a_valid_docker_tag() -> None:
    tag = _recipe().tag()
    assert tag == _recipe().tag()
    assert TAG.match(tag) and tag.startswith("py3.11-x86_64-")


def test_a_changed_pin_changes_the_tag() -> None:
    base = _env(cloudpickle="3.1.3", numpy="2.4.6")
    assert _recipe(base).tag() != _recipe(base.replace_pin("numpy", "2.4.5")).tag()
    assert _recipe(base).tag() != _recipe(base.replace_pin("requests", "2.31.0")).tag()


@pytest.mark.parametrize("change", [
    {"architecture": "arm64"},
    {"requirements": ("requests==2.31.0",)},
    {"apt_packages": ("libgomp1",)},
    {"dockerfile": "FROM python:3.11-slim\n"},
    {"allow_index": True},
])
def test_every_input_enters_the_tag(change: dict) -> None:
    assert _recipe(**change).tag() != _recipe().tag()


def test_python_minor_base_and_package_enter_the_tag() -> None:
    env = _env(cloudpickle="3.1.3")
    other_patch = image.Environment("3.11.9", env.pins, (), env.package_version, env.package_digest)
    other_minor = image.Environment("3.12.1", env.pins, (), env.package_version, env.package_digest)
    edited = image.Environment("3.11.7", env.pins, (), env.package_version, "e" * 64)
    assert _recipe(other_patch).tag() == _recipe(env).tag()  # pickles travel between patches
    assert _recipe(other_minor).tag() != _recipe(env).tag()
    assert _recipe(edited).tag() != _recipe(env).tag()
    moved = image.ImageRecipe(env, base_image="other/python:3.11")
    assert moved.tag() != _recipe(env).tag()


def test_default_base_image_is_the_public_ecr_mirror() -> None:
    assert image.default_base_image("3.11") == "public.ecr.aws/docker/library/python:3.11-slim"


def test_dockerfile_runs_the_worker_and_installs_offline() -> None:
    text = _recipe().render()
    assert 'CMD ["python", "-m", "starburst_executor.worker"]' in text
    assert "--no-index" in text and "apt-get" not in text and "@@" not in text
    with_apt = _recipe(apt_packages=("libgomp1",)).render([("oddpkg", "1.0")], extras=True)
    assert "apt-get install -y --no-install-recommends libgomp1" in with_apt
    assert "'oddpkg==1.0'" in with_apt and "extra.txt" in with_apt


def test_template_is_found_through_the_package() -> None:
    from starburst_executor.image import recipe

    assert recipe.TEMPLATE.is_file()
    assert "@@LABELS@@" in recipe.TEMPLATE.read_text()


def test_an_edited_template_changes_the_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from starburst_executor.image import recipe

    before = _recipe().tag()
    edited = tmp_path / "Dockerfile.template"
    edited.write_text(recipe.TEMPLATE.read_text() + "\n# an edit\n")
    monkeypatch.setattr(recipe, "TEMPLATE", edited)
    assert _recipe().tag() != before


def test_package_wheel_is_reproducible_and_complete(tmp_path: Path) -> None:
    first = wheels.package_wheel(tmp_path / "a", "0.1.0")
    second = wheels.package_wheel(tmp_path / "b", "0.1.0")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
        assert "starburst_executor/worker.py" in names
        assert not any("__pycache__" in n for n in names)
        record = zf.read("starburst_executor-0.1.0.dist-info/RECORD").decode()
    assert "starburst_executor/worker.py,sha256=" in record


def test_targets_ask_pip_for_the_right_platform() -> None:
    arm = wheels.Target("3.12", "arm64")
    args = arm.pip_args()
    assert "manylinux_2_17_aarch64" in args and "manylinux2014_aarch64" in args
    assert args[args.index("--python-version") + 1] == "3.12" and "cp312" in args
    assert not any("x86_64" in a for a in args)
    assert arm.key == "cp312-aarch64"


def test_errors_are_in_the_tree() -> None:
    assert issubclass(image.ImageError, StarburstError)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    from starburst_executor.config import load_config

    with pytest.raises(ConfigError, match="not a file"):
        image.build_image(load_config({}, env={}), dockerfile=tmp_path / "nope",
                          environment=_env(), log=lambda line: None)


def test_no_daemon_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ConfigError, match="no Docker daemon answers.*dockerd"):
        daemon.open_daemon(timeout=5)


def _package_copy(tmp_path: Path) -> Path:
    """A copy of the package's sources, to edit."""
    import shutil

    root = tmp_path / "starburst_executor"
    shutil.copytree(Path(image.__file__).parents[1], root,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


@pytest.mark.parametrize("edited, changes_tag", [
    ("cli.py", False),
    ("provision/__init__.py", False),
    ("provision/setup.py", False),
    ("image/build.py", False),
    ("worker.py", True),
    ("payload.py", True),
    ("storage/s3.py", True),
])
def test_tag_hashes_only_what_runs_in_the_worker(tmp_path: Path, edited: str,
                                                 changes_tag: bool) -> None:
    root = _package_copy(tmp_path)
    env = _env()

    def tag() -> str:
        digest = wheels.worker_digest(root)
        return _recipe(image.Environment(env.python_version, env.pins, (), env.package_version,
                                         digest)).tag()

    before = tag()
    with (root / edited).open("a") as file:
        file.write("\n# an edit\n")
    assert (tag() != before) is changes_tag


def test_worker_files_follow_the_workers_imports() -> None:
    root = Path(image.__file__).parents[1]
    names = {p.relative_to(root).as_posix() for p in wheels.worker_files(root)}
    assert {"__init__.py", "worker.py", "payload.py", "errors.py", "storage/__init__.py",
            "storage/s3.py"} <= names
    assert not {"cli.py", "executor.py", "config.py"} & names
    assert not any(n.startswith(("provision/", "image/", "launch/")) for n in names)
