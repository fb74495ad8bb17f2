"""Reproduce a run from its ID: the same stage, its logged resolved config, the same upstream run; then compare.

The new run is tagged `mygo.reproduces=<id>`. What must match: for select, the selected-ids hash,
exactly; for convert, warmup, score and finetune, the weights (or router data) within
`reproduce.weights_atol`; for every stage, its metrics within `reproduce.metrics_rtol` (timings
aside; system metrics are the machine's, not the run's results). A comparison table is printed, and
`ReproductionMismatch` (exit status 1) says where they differ. The environment the original was made in
(`mygo.tracking.environment`) is compared too: a different one is reported, with the packages whose
versions differ, beside the comparison and in any mismatch, but is no failure by itself.
Nothing is skipped quietly: weights that neither run has, or a metric only one of them logged, is a
difference; a logged config holding masked secrets (`***`) is refused, since re-running it would use the mask.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.numpy import load_file

from mygo.config import flatten_config
from mygo.stages.table import STAGES, upstream_keys
from mygo.tracking.builds import BUILTIN_KINDS
from mygo.tracking.code_version import CODE_DIGEST_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG, code_digest, git_state
from mygo.tracking.environment import environment_notice
from mygo.tracking.handoffs import SELECTED_IDS_TAG, router_data_of
from mygo.tracking.redaction import MASK, redact_text
from mygo.tracking.runs import STAGE_TAG, configure_tracking, get_run

logger = logging.getLogger(__name__)

REPRODUCES_TAG = "mygo.reproduces"
# Keys of a stage's config that name the runs it builds on.
UPSTREAM_KEYS = upstream_keys()
# Weights each stage leaves, compared tensor by tensor (artifact path in the run).
WEIGHT_ARTIFACTS = {entry.name: entry.compared_weights for entry in STAGES if entry.compared_weights}
TIMING_WORDS = ("seconds", "per_s", "runtime")
SYSTEM_METRICS_PREFIX = "system/"  # CPU, memory, disk use (mygo.tracking.system_metrics): never compared


class ReproductionMismatch(RuntimeError):
    """The reproduction differs from the original beyond the stated tolerance."""


@dataclass
class Check:
    item: str
    original: str
    reproduced: str
    difference: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.difference <= self.tolerance


def _runners() -> dict[str, Callable[[DictConfig], str]]:
    return {entry.name: entry.load_runner() for entry in STAGES}


def original_config(run: Run) -> DictConfig:
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/resolved.yaml")
    except MlflowException as error:
        raise ValueError(f"run {run.info.run_id} has no config/resolved.yaml: not a mygo stage run") from error
    return OmegaConf.create(text)


def masked_keys(cfg: DictConfig) -> list[str]:
    """Keys whose logged value holds the redaction mask: the secret was never recorded, so it cannot be replayed."""
    flat = flatten_config(cfg)
    return sorted(key for key, value in flat.items() if value is not None and MASK in str(value))


def check_upstream_runs(cfg: DictConfig, run: Run) -> None:
    """Every run the original built on still exists (and is not deleted) in this store."""
    for key in UPSTREAM_KEYS:
        upstream = OmegaConf.select(cfg, key)
        if not upstream:
            continue
        try:
            found = mlflow.get_run(upstream)
        except MlflowException:
            found = None
        if found is None or found.info.lifecycle_stage == "deleted":
            raise ValueError(
                f"cannot reproduce run {run.info.run_id}: its upstream run {upstream} ({key}) is missing "
                f"or deleted in tracking store {redact_text(mlflow.get_tracking_uri())}"
            )


def code_notice(run: Run) -> str | None:
    """What differs between the code that made the run and this checkout, and which commit to check out."""
    tags = run.data.tags
    commit, dirty = tags.get(GIT_COMMIT_TAG), tags.get(GIT_DIRTY_TAG) == "true"
    if tags.get(CODE_DIGEST_TAG) == code_digest():
        return None
    here, here_dirty = git_state()
    made = f"commit {commit}" if commit else "unknown code (no git commit recorded)"
    if dirty:
        made += " with uncommitted changes (their content was not recorded)"
    checkout = f"; run `git checkout {commit}` to reproduce it exactly" if commit else ""
    return (
        f"run {run.info.run_id} was made from {made}; this checkout is at {here or 'no git commit'}"
        f"{' with uncommitted changes' if here_dirty else ''}, so results may differ{checkout}"
    )


def _download(run_id: str, path: str, into: Path) -> Path | None:
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(into)))
    except (MlflowException, OSError):
        return None


def compare_weights(stage: str, original: str, reproduced: str, atol: float) -> list[Check]:
    artifact = WEIGHT_ARTIFACTS[stage]
    with tempfile.TemporaryDirectory() as tmp:
        first = _download(original, artifact, Path(tmp) / "original")
        second = _download(reproduced, artifact, Path(tmp) / "reproduced")
        if first is None or second is None:  # neither: a large model recorded only by path, or a lost artifact
            found = {True: "present", False: "missing"}
            item = f"{artifact} (cannot compare)"
            return [Check(item, found[first is not None], found[second is not None], np.inf, atol)]
        a, b = load_file(first), load_file(second)
    if set(a) != set(b):
        return [Check(f"{artifact} tensor names", str(len(a)), str(len(b)), np.inf, atol)]
    worst = max((float(np.abs(a[k].astype(np.float64) - b[k]).max(initial=0.0)) for k in a), default=0.0)
    return [Check(f"{artifact} (max abs diff of {len(a)} tensors)", "-", "-", worst, atol)]


def compare_router_data(original: Run, reproduced: Run, atol: float) -> list[Check]:
    first, second = router_data_of(original), router_data_of(reproduced)
    checks = [Check("router_data ids", str(len(first.index)), str(len(second.index)), 0.0, 0.0)]
    if not first.index["id"].equals(second.index["id"]):
        checks[0].difference = np.inf
        return checks
    for name in ("quality", "features"):
        a, b = getattr(first, name).astype(np.float64), getattr(second, name).astype(np.float64)
        checks.append(
            Check(f"router_data {name} (max abs diff)", str(a.shape), str(b.shape), float(np.abs(a - b).max()), atol)
        )
    return checks


def compare_metrics(original: Run, reproduced: Run, rtol: float) -> list[Check]:
    first, second = original.data.metrics, reproduced.data.metrics
    checks = []
    for name in sorted(set(first) | set(second)):
        if any(word in name for word in TIMING_WORDS) or name.startswith(SYSTEM_METRICS_PREFIX):
            continue
        if name not in first or name not in second:  # a metric one run logged and the other did not
            if name.split("/", 1)[0] in BUILTIN_KINDS:  # the embedded model's build: logged by whichever built it
                continue
            shown = {True: "logged", False: "missing"}
            checks.append(Check(name, shown[name in first], shown[name in second], np.inf, rtol))
            continue
        a, b = first[name], second[name]
        relative = abs(a - b) / max(abs(a), abs(b), 1e-12) if a != b else 0.0
        checks.append(Check(name, f"{a:.6g}", f"{b:.6g}", relative, rtol))
    return checks


def compare(stage: str, original: Run, reproduced: Run, cfg: DictConfig) -> list[Check]:
    checks = []
    if stage == "select":
        a, b = original.data.tags.get(SELECTED_IDS_TAG), reproduced.data.tags.get(SELECTED_IDS_TAG)
        same = a is not None and a == b  # a hash neither run recorded is no evidence
        checks.append(Check("selected ids sha256", str(a)[:16], str(b)[:16], 0.0 if same else np.inf, 0.0))
    if stage in WEIGHT_ARTIFACTS:
        checks += compare_weights(stage, original.info.run_id, reproduced.info.run_id, cfg.reproduce.weights_atol)
    if stage == "score":
        checks += compare_router_data(original, reproduced, cfg.reproduce.weights_atol)
    return checks + compare_metrics(original, reproduced, cfg.reproduce.metrics_rtol)


def format_checks(checks: list[Check]) -> str:
    lines = [f"{'':3}{'item':<58}{'original':>18}{'reproduced':>18}{'difference':>12}{'tolerance':>11}"]
    for check in checks:
        mark = "ok" if check.ok else "XX"
        lines.append(
            f"{mark:<3}{check.item[:57]:<58}{check.original[:17]:>18}{check.reproduced[:17]:>18}"
            f"{check.difference:>12.3g}{check.tolerance:>11.3g}"
        )
    return "\n".join(lines)


def run_reproduce(cfg: DictConfig) -> str:
    """Re-execute the run's stage as a new run and compare; returns the new run ID."""
    configure_tracking(cfg)
    run_id = cfg.reproduce.run_id
    if not run_id:
        raise ValueError("reproduce needs a run ID: mygo reproduce <run id> (-P run_id=<run id>)")
    original = get_run(run_id)
    stage = original.data.tags.get(STAGE_TAG)
    runners = _runners()
    if stage not in runners:
        raise ValueError(f"run {run_id} is a {stage or 'non-mygo'} run; reproduce one of the stages {list(runners)}")
    stage_cfg = original_config(original)
    if masked := masked_keys(stage_cfg):
        raise ValueError(
            f"cannot reproduce run {run_id}: its logged config holds masked secrets ({MASK}) at {', '.join(masked)}; "
            "the values were never recorded, and re-running with the mask in their place would not be this run"
        )
    check_upstream_runs(stage_cfg, original)
    if notice := code_notice(original):
        logger.warning(notice)
        print(f"NOTE: {notice}")
    if environment := environment_notice(original):
        logger.warning(environment)
        print(f"NOTE: {environment}")
    with open_dict(stage_cfg):
        stage_cfg.tracking = cfg.tracking  # this store, this experiment
        if stage == "score":  # a fresh work directory: re-score rather than resume the original's shards
            stage_cfg.score.output_dir = str(Path(cfg.reproduce.output_dir) / run_id / "score")
    new_id = runners[stage](stage_cfg)
    mlflow.MlflowClient().set_tag(new_id, REPRODUCES_TAG, run_id)
    checks = compare(stage, original, get_run(new_id), cfg)
    print(f"\nreproducing {stage} run {run_id} as {new_id}")
    print(format_checks(checks))
    failed = [check.item for check in checks if not check.ok]
    if failed:
        if environment:  # beside the mismatch, so that a library upgrade is seen as a possible cause
            print(f"NOTE: {environment}")
        raise ReproductionMismatch(
            f"run {new_id} differs from {run_id} in {len(failed)} item(s): {', '.join(failed[:5])}"
            + (f"; {environment}" if environment else "")
        )
    print(f"reproduced: {len(checks)} checks within tolerance")
    return new_id
