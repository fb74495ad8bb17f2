"""The environment a run was made in, recorded on the run and compared by `reproduce`.

With `--env-manager local` MLflow records no environment, so a rerun elsewhere could not tell a code
change from a library upgrade. Every mygo run therefore logs the installed distributions with their
versions (`environment/requirements.txt`, one `name==version` a line, names normalised as pip does) and
the interpreter, torch, CUDA and devices as `mygo.env.*` tags.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

REQUIREMENTS_ARTIFACT = "environment/requirements.txt"
ENV_TAG_PREFIX = "mygo.env."
MAX_LISTED = 40  # differing packages named in a notice; the rest are counted


def canonical_name(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503): `Foo_Bar.baz` is `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache  # what is installed does not change under a running process, in practice
def installed_distributions() -> dict[str, str]:
    """Every importable distribution and its version; the first on `sys.path` wins, as it does for imports."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical_name(name), dist.version)
    return dict(sorted(found.items()))


def requirements_text(distributions: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(distributions.items()))


def parse_requirements(text: str) -> dict[str, str]:
    """`name==version` lines (comments and blank lines aside) back into {canonical name: version}."""
    parsed = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            parsed[canonical_name(name.strip())] = version.strip()
    return parsed


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def environment_tags() -> dict[str, str]:
    """`mygo.env.*`: Python, platform, torch and its CUDA build, and the devices a stage can use."""
    import torch

    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    tags = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",  # the CUDA torch was built with
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",
        "cpu": _cpu_name(),
        "devices": ", ".join(devices) if devices else "cpu",
    }
    return {ENV_TAG_PREFIX + key: value for key, value in tags.items()}


def log_environment() -> None:
    """Record this process's environment on the active run."""
    mlflow.set_tags(environment_tags())
    mlflow.log_text(requirements_text(installed_distributions()), REQUIREMENTS_ARTIFACT)


def logged_requirements(run: Run) -> dict[str, str] | None:
    """The distributions the run recorded, or None for a run made before runs recorded them."""
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{REQUIREMENTS_ARTIFACT}")
    except (MlflowException, OSError):
        return None
    return parse_requirements(text)


def package_differences(logged: dict[str, str], current: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(name, version then, version now) for every distribution that differs; None where it is absent."""
    return [
        (name, logged.get(name), current.get(name))
        for name in sorted(set(logged) | set(current))
        if logged.get(name) != current.get(name)
    ]


def environment_notice(run: Run) -> str | None:
    """What differs between the environment the run was made in and this one; None when nothing does."""
    run_id = run.info.run_id
    logged = logged_requirements(run)
    if logged is None:
        return f"run {run_id} recorded no environment ({REQUIREMENTS_ARTIFACT}): library versions cannot be compared"
    parts = []
    tags = run.data.tags
    for key, value in environment_tags().items():
        then = tags.get(key)
        if then is not None and then != value:
            parts.append(f"{key.removeprefix(ENV_TAG_PREFIX)} {then} -> {value}")
    differences = package_differences(logged, installed_distributions())
    if differences:
        shown = [f"{name} {then or '(absent)'} -> {now or '(absent)'}" for name, then, now in differences[:MAX_LISTED]]
        more = f" and {len(differences) - MAX_LISTED} more" if len(differences) > MAX_LISTED else ""
        parts.append(f"{len(differences)} package(s) differ: {', '.join(shown)}{more}")
    if not parts:
        return None
    return f"run {run_id} was made in another environment: " + "; ".join(parts)
