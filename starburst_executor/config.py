"""Settings: one frozen record, resolved once per executor, and the config file behind it.

Precedence, highest first: keyword argument > ``STARBURST_<NAME>`` environment variable > the
config file written by ``starburst setup`` > default.  The file is JSON, at ``$STARBURST_CONFIG``
or ``~/.config/starburst/config.json``; this module is the only one that reads or writes it.
It also says where the S3 store of the settings lives (:func:`store_root`,
:func:`sessions_prefix`).  Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from .errors import ConfigError

__all__ = [
    "Config",
    "load_config",
    "config_path",
    "parse_memory",
    "parse_size",
    "read_config_file",
    "write_config_file",
    "update_config_file",
    "store_root",
    "sessions_prefix",
    "check_bucket_name",
    "check_prefix",
    "check_region",
    "BACKENDS",
]

BACKENDS = ("fargate", "local", "docker")
ARCHITECTURES = ("x86_64", "arm64")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of an executor.  Build it with :func:`load_config`."""

    backend: str = "fargate"
    max_workers: int | None = None
    # Resources of one worker.
    cpu: float = 1.0
    memory: int = 2048  # MiB
    ephemeral_storage: int = 20  # GiB; 20 is Fargate's default, included in the price
    architecture: str = "x86_64"
    spot: bool = False
    # Where things live.
    region: str | None = None
    bucket: str | None = None
    prefix: str = "starburst"
    store: str | None = None  # URL of the object store root; overrides bucket/prefix
    kms_key_id: str | None = None
    cluster: str = "starburst"
    image: str | None = None
    auto_build: bool = False
    docker_aws_credentials: bool = False  # docker backend: pass the host's AWS keys in
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = True
    execution_role: str = "starburstECSExecutionRole"
    task_role: str = "starburstECSTaskRole"
    log_group: str = "/starburst/workers"
    # Behaviour.
    max_retries: int = 3
    idle_timeout: float = 60.0
    start_timeout: float = 600.0
    task_timeout: float | None = None
    max_cost: float | None = None
    progress: bool = False
    forward_output: bool = True
    max_tasks_per_child: int | None = None  # a worker exits after this many calls
    # A call whose result or arguments pickle to more bytes fails at once (ResultTooLarge).
    max_result_size: int = 2 * 1024**3
    rerun_stragglers: bool = True  # run a batch far past its estimate again on an idle worker
    # Detached sessions (see ``starburst_executor.detached``): workers outlive the client.
    detached: bool = False
    deadline: float | None = None  # seconds from the first submit after which no batch starts
    lease_timeout: float = 60.0  # a claimed batch whose lease is this old is claimable again

    def replace(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied and validated."""
        return _validated(dataclasses.replace(self, **changes))


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def config_path() -> Path:
    """Where the config file lives: ``$STARBURST_CONFIG`` or ``~/.config/starburst/config.json``."""
    explicit = os.environ.get("STARBURST_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "starburst" / "config.json"


def write_config_file(values: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write ``values`` (validated field names only) as the config file; return its path."""
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}; valid names: {sorted(_FIELDS)}")
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_config_file(path: Path | None = None) -> dict[str, Any] | None:
    """The settings the config file holds (known names only); ``None`` when there is no file or
    it cannot be read as a JSON object."""
    try:
        data = _read_file(path or config_path())
    except ConfigError:
        return None
    return None if data is None else {k: v for k, v in data.items() if k in _FIELDS}


def update_config_file(
    changes: Mapping[str, Any], path: Path | None = None, *, remove: Iterable[str] = ()
) -> Path:
    """Set ``changes`` and drop the names in ``remove`` in the config file, keeping its other
    settings (a file that cannot be read counts as empty); delete the file when nothing is left.
    Returns its path."""
    path = path or config_path()
    values = {**(read_config_file(path) or {}), **changes}
    for name in remove:
        values.pop(name, None)
    if values:
        return write_config_file(values, path)
    path.unlink(missing_ok=True)
    return path


def _read_file(file: Path) -> dict[str, Any] | None:
    """The JSON object in ``file``, ``None`` when there is no file; :class:`ConfigError` else."""
    if not file.exists():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}; fix or delete it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a JSON object")
    return data


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Config:
    """Resolve settings: ``overrides`` > ``STARBURST_*`` in ``env`` > config file > defaults.

    ``None`` in ``overrides`` means "not given".  Raises :class:`ConfigError` naming the bad value
    and its source.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    file = path or config_path()
    data = _read_file(file)
    if data is not None:
        for name, value in data.items():
            if name in _FIELDS:  # unknown keys are ignored so old clients read newer files
                values[name] = value
                sources[name] = f"config file {file}"
    for name in _FIELDS:
        raw = env.get("STARBURST_" + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
            sources[name] = f"environment variable STARBURST_{name.upper()}"
    for name, value in (overrides or {}).items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}; valid names: {sorted(_FIELDS)}")
        if value is not None:
            values[name] = value
            sources[name] = f"argument {name}="
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = _convert(name, value)
        except ConfigError as exc:  # names the value already
            raise ConfigError(f"{sources[name]}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{sources[name]}: invalid {name}={value!r}: {exc}") from None
    return _validated(Config(**converted))


_MEMORY_UNITS = {
    "": 1, "m": 1, "mb": 1, "mib": 1,
    "g": 1024, "gb": 1024, "gib": 1024,
    "k": 1 / 1024, "kb": 1 / 1024, "kib": 1 / 1024,
}


def parse_memory(value: str | int | float) -> int:
    """Return MiB from ``value``: a number of MiB, or a string such as ``"8GB"``, ``"512MiB"``.

    Like Fargate, GB means GiB.
    """
    if isinstance(value, bool):
        raise ValueError("memory must be a number of MiB or a string such as '8GB'")
    if isinstance(value, (int, float)):
        mib = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not match or match.group(2).lower() not in _MEMORY_UNITS:
            raise ValueError(
                f"cannot read memory {value!r}: write e.g. '512MiB', '2GB', '8GiB' or 4096 (MiB)"
            )
        mib = float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]
    if mib <= 0 or not math.isfinite(mib) or mib != int(mib):
        raise ValueError(f"memory must be a positive whole number of MiB, got {value!r}")
    return int(mib)


def parse_size(value: str | int | float) -> int:
    """Return bytes from ``value``: a number of bytes, or a string such as ``"500MB"``,
    ``"2GiB"``, ``"64KB"`` (like ``memory``, KB, MB and GB mean KiB, MiB and GiB)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as '500MB'")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or (unit and unit not in _MEMORY_UNITS) or unit == "m":
            raise ValueError(f"cannot read size {value!r}: write e.g. '500MB', '2GiB' or bytes")
        value = float(match.group(1)) * (_MEMORY_UNITS[unit] * 2**20 if unit else 1)
    if not math.isfinite(value) or round(value) < 1:
        raise ValueError(f"a size must be at least one byte, got {value!r}")
    return round(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _to_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)


def _convert(name: str, value: Any) -> Any:
    if name == "memory":
        return parse_memory(value)
    if name == "max_result_size":
        return parse_size(value)
    if name in ("max_workers", "ephemeral_storage", "max_retries", "max_tasks_per_child"):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected a whole number")
        return int(value)
    if name in ("cpu", "idle_timeout", "start_timeout", "task_timeout", "max_cost", "deadline",
                "lease_timeout"):
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    if name in ("spot", "assign_public_ip", "auto_build", "progress", "forward_output",
                "docker_aws_credentials", "rerun_stragglers", "detached"):
        return _to_bool(value)
    if name in ("subnets", "security_groups"):
        return _to_tuple(value)
    if name == "bucket":
        return check_bucket_name(str(value))
    if name == "prefix":
        return check_prefix(str(value))
    if name == "region":
        return check_region(str(value))
    return str(value)


def _validated(config: Config) -> Config:
    if config.backend not in BACKENDS:
        raise ConfigError(f"backend={config.backend!r} is not one of {', '.join(BACKENDS)}")
    if config.architecture not in ARCHITECTURES:
        raise ConfigError(
            f"architecture={config.architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )
    if config.max_workers is not None and config.max_workers < 1:
        raise ConfigError(f"max_workers must be at least 1, got {config.max_workers}")
    if config.max_tasks_per_child is not None and config.max_tasks_per_child < 1:
        raise ConfigError(
            f"max_tasks_per_child must be at least 1, got {config.max_tasks_per_child}")
    if config.max_retries < 0:
        raise ConfigError(f"max_retries must be 0 or more, got {config.max_retries}")
    for name in ("idle_timeout", "start_timeout", "task_timeout", "max_cost", "cpu", "deadline",
                 "lease_timeout"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if config.bucket is not None:
        check_bucket_name(config.bucket)
    check_prefix(config.prefix)
    if config.region is not None:
        check_region(config.region)
    if config.detached and config.max_cost is None and config.deadline is None:
        raise ConfigError("detached=True needs max_cost= or deadline= (seconds): workers that "
                          "no client watches must be bounded")
    return config


_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^[0-9]+(\.[0-9]+){3}$")
_BUCKET_RESERVED = (("xn--", "sthree-", "amzn-s3-demo-"), ("-s3alias", "--ol-s3", ".mrap"))


def check_bucket_name(bucket: str) -> str:
    """Check ``bucket`` against S3's naming rules; :class:`ConfigError` saying which one fails."""
    if "/" in bucket or bucket.startswith("s3:"):
        name, _, key = bucket.removeprefix("s3://").partition("/")
        raise ConfigError(
            f"bucket={bucket!r} is not a bucket name: a bucket name has no '/' or s3://; "
            f"pass bucket={name!r}" + (f" and prefix={key.strip('/')!r}" if key.strip("/") else "")
            + " (or the whole URL as store=...)")
    rule = ""
    if not 3 <= len(bucket) <= 63:
        rule = "it must be 3 to 63 characters long"
    elif not _BUCKET.match(bucket):
        rule = ("it may hold only lowercase letters, digits, dots and hyphens, and must begin "
                "and end with a letter or digit")
    elif ".." in bucket or ".-" in bucket or "-." in bucket:
        rule = "dots may not be next to each other or to a hyphen"
    elif _IP_ADDRESS.match(bucket):
        rule = "it may not look like an IP address"
    elif bucket.startswith(_BUCKET_RESERVED[0]) or bucket.endswith(_BUCKET_RESERVED[1]):
        rule = "it begins or ends with a prefix or suffix S3 reserves"
    if rule:
        raise ConfigError(f"bucket={bucket!r} is not a valid S3 bucket name: {rule}")
    return bucket


def check_prefix(prefix: str) -> str:
    """Check a key prefix: relative, no ``.``/``..`` or empty parts, no control characters."""
    if prefix.startswith("/"):
        raise ConfigError(f"prefix={prefix!r} must not begin with '/': write "
                          f"{prefix.lstrip('/')!r}")
    parts = prefix.rstrip("/").split("/") if prefix.rstrip("/") else []
    if any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"prefix={prefix!r} has an empty, '.' or '..' part: write the folders "
                          "of the key prefix, e.g. 'starburst' or 'team/alice'")
    if len(prefix) > 200 or any(ord(c) < 32 or c in "\\\x7f" for c in prefix):
        raise ConfigError(f"prefix={prefix!r} must be at most 200 characters with no control "
                          "characters or backslashes")
    return prefix


def check_region(region: str) -> str:
    """Check that ``region`` looks like an AWS region name (``us-east-1``, ``eu-west-3``)."""
    if not _REGION.match(region):
        raise ConfigError(
            f"region={region!r} is not an AWS region name: write it like us-east-1, eu-west-1, "
            "ap-southeast-2 (`aws ec2 describe-regions` lists them)")
    return region


def store_root(config: Config) -> str:
    """The URL of the S3 store root of the fargate backend: ``config.store``, else
    ``s3://<bucket>/<prefix>`` with ``region`` and ``kms_key_id`` as query options.

    Raises:
        ConfigError: no store and no bucket configured.
    """
    if config.store:
        return config.store
    if not config.bucket:
        raise ConfigError(
            "no S3 bucket is configured for the fargate backend: run `starburst setup` (it "
            "creates one and writes the config file), or pass bucket=... / set STARBURST_BUCKET"
        )
    root = f"s3://{config.bucket}/{config.prefix.strip('/')}"
    options = {k: v for k, v in (("region", config.region), ("kms_key_id", config.kms_key_id)) if v}
    if options:
        root += "?" + urlencode(options)
    return root


def sessions_prefix(config: Config) -> tuple[str, str]:
    """(bucket, key prefix of the sessions' data, ending in ``sessions/``) of an S3 store.

    Raises:
        ConfigError: no bucket configured.
    """
    if config.store and config.store.startswith("s3://"):
        parts = urlsplit(config.store)
        bucket, prefix = parts.netloc, parts.path
    else:
        bucket, prefix = config.bucket or "", config.prefix
    if not bucket:
        raise ConfigError("no bucket configured: run `starburst setup` or set STARBURST_BUCKET")
    prefix = prefix.strip("/")
    return bucket, (f"{prefix}/sessions/" if prefix else "sessions/")
