"""The evaluate stage: the lm-eval harness on the target model, with a finetune run's LoRA adapter or alone.

lm-eval loads the model itself (`pretrained` + `peft`), so `accelerate launch` spreads the examples
over GPUs as lm-eval does; only the main process records the run. Tasks are lm-eval's own (MMLU, ...)
plus the YAMLs in `configs/eval_tasks/` (the embedded default's `stdlib_qa` and `stdlib_mmlu`). Each task
is scored on the splits asked for (`evaluation.splits`): `val`, its validation split, which sweeps and
`main` choose on, and `test`, reported once for the final figure. Every metric lm-eval reports becomes
`eval/<task>/<split>/<metric>`, with `eval/<task>/<split>/<subject>/<metric>` for a group's subtasks, and
the full results are kept as `eval/results_<split>.json`. The tasks the target preset calls out of domain are
scored as a group too: `eval/out_of_domain/<split>/<metric>` (their mean) and `eval/all_domains/<split>/<metric>`
(that and the in-domain tasks' mean, weighed alike).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import torch
from accelerate import PartialState
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from mygo.analysis.arms import domain_means
from mygo.config import config_dir
from mygo.stages.target import load_target_tokenizer, target_location
from mygo.tracking import plots
from mygo.tracking.handoffs import BASE_ONLY_TAG, adapter_of
from mygo.tracking.models import finetune_run_of
from mygo.tracking.runs import check_upstream, log_dataset_input, stage_run

logger = logging.getLogger(__name__)

CHAT_TEMPLATE_TAG = "mygo.eval_chat_template"
SPLITS = ("val", "test")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


def task_dir(cfg: DictConfig) -> Path:
    return Path(cfg.evaluation.task_dir) if cfg.evaluation.task_dir else config_dir() / "eval_tasks"


@functools.cache  # indexing lm-eval's tasks takes seconds: once per process (a sweep evaluates many times)
def task_manager(directory: Path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(directory))


def task_names(setting) -> list[str]:
    """`mmlu`, `mmlu,arc_easy` (from the command line) or a YAML list."""
    if isinstance(setting, str):
        return [name.strip() for name in setting.split(",") if name.strip()]
    return [str(name) for name in setting]


def task_domains(cfg: DictConfig, tasks: list[str]) -> tuple[list[str], list[str]]:
    """(in-domain, out-of-domain) tasks among those run, as the target preset names them (`target.evaluation.
    in_domain`, `.out_of_domain`): the out-of-domain ones are scored as a group too (`eval/out_of_domain/...`)."""
    setting = cfg.target.evaluation
    inside, outside = task_names(setting.get("in_domain") or []), task_names(setting.get("out_of_domain") or [])
    return [t for t in inside if t in tasks], [t for t in outside if t in tasks]


def check_tasks(tasks: list[str], manager) -> None:
    """Every name is a task, group or tag lm-eval knows; otherwise say which are close."""
    known = set(manager.all_tasks)
    for name in tasks:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ValueError(f"evaluation.tasks: unknown lm-eval task {name!r}{hint}")


def eval_splits(setting) -> list[str]:
    """`val`, `val,test` (from the command line) or a YAML list; each one of SPLITS."""
    splits = task_names(setting)
    if not splits or any(split not in SPLITS for split in splits):
        raise ValueError(f"evaluation.splits must name one or more of {list(SPLITS)}, got {setting!r}")
    return splits


def use_split(task, split: str) -> None:
    """Score an lm-eval task on its validation split (`val`) or its test split; say so if it has none."""
    config = task.config
    if split == "test":
        if not config.test_split:
            raise ValueError(f"lm-eval task {config.task} has no test split")
        return
    # lm-eval prefers the test split whenever a task has one: without it, the validation split is scored.
    name = config.validation_split or "validation"  # MMLU's YAML names none, its dataset has `validation`
    if name not in task.dataset:
        raise ValueError(f"lm-eval task {config.task} has no validation split (its splits: {list(task.dataset)})")
    config.validation_split, config.test_split = name, None


class SplitTaskManager:
    """lm-eval's task manager, every task it loads scored on one split (the indexed manager is shared)."""

    def __init__(self, manager, split: str) -> None:
        self._manager, self._split = manager, split

    def __getattr__(self, name: str):
        return getattr(self._manager, name)

    def load(self, tasks):
        loaded = self._manager.load(tasks)
        for task in loaded["tasks"].values():
            use_split(task, self._split)
        return loaded


def chat_template_choice(setting, finetune) -> tuple[bool, str]:
    """Whether to render prompts with the chat template, and why: by default, as finetune trained the adapter.

    finetune always trains on chat-formatted conversations (`mygo.data.chat`), so an adapter, and its base as
    the baseline, are scored on chat-formatted prompts; a target with no finetune run was pretrained on plain
    text, so it is scored on plain prompts.
    """
    if setting is None or str(setting).lower() == "auto":
        if finetune is not None:
            return True, "auto: the finetune run trained on chat-formatted data"
        return False, "auto: no finetune run; the target was pretrained on plain text"
    chosen = str(setting).lower() == "true" if isinstance(setting, str) else bool(setting)
    if finetune is not None and not chosen:
        return False, "set: off, although the finetune run trained on chat-formatted data"
    return chosen, "set"


def evaluation_settings(cfg: DictConfig) -> tuple[DictConfig, object | None]:
    """The config with the finetune run's target (the base its adapter belongs to) and the run itself."""
    finetune_id, model_uri = cfg.upstream.finetune_run, cfg.upstream.get("model_uri")
    if finetune_id and model_uri:
        raise ValueError("give upstream.finetune_run or upstream.model_uri (-P model_uri=models:/...), not both")
    if model_uri:  # a registered version: evaluate the finetune run that logged it
        finetune_id = finetune_run_of(model_uri).info.run_id
        logger.info("%s is finetune run %s's model", model_uri, finetune_id)
    if not finetune_id:
        if not cfg.evaluation.base_only:
            raise ValueError(
                "give upstream.finetune_run (-P finetune_run=<run id>) or upstream.model_uri "
                "(-P model_uri=models:/<name>@<alias>), or evaluation.base_only=true "
                "(-P base_only=true) to evaluate the configured target alone"
            )
        return cfg, None
    run = check_upstream(finetune_id, "finetune")
    resolved = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{finetune_id}/config/resolved.yaml"))
    if OmegaConf.to_container(resolved.target) != OmegaConf.to_container(cfg.target):
        logger.info("evaluating with finetune run %s's target %s", finetune_id, resolved.target.name)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.target = resolved.target
    return cfg, run


def _lora_modules(adapter_dir: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """{module path in the base model: {"A"/"B": weight shape}} of a saved peft LoRA adapter."""
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"adapter {adapter_dir} has no {ADAPTER_WEIGHTS}")
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not iterable)
            for suffix in LORA_SUFFIXES:
                if key.endswith(suffix):
                    module = key.removesuffix(suffix).removeprefix("base_model.model.")
                    modules.setdefault(module, {})[suffix[6]] = tuple(handle.get_slice(key).get_shape())
    return modules


def check_adapter_fits(adapter_dir: Path, base_location: str) -> None:
    """The adapter's LoRA weights match the base model's modules one to one, in names and shapes.

    Checked on the base's config alone (an empty model on the meta device), before anything loads.
    """
    from accelerate import init_empty_weights

    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    with init_empty_weights():
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_location))
    targets = set(adapter.get("target_modules") or [])
    expected = {name for name, _ in base.named_modules() if name.rsplit(".", 1)[-1] in targets}
    found = _lora_modules(adapter_dir)
    problems = []
    if missing := sorted(set(found) - expected):
        problems.append(f"the base has no module {missing[0]} (and {len(missing) - 1} more) that the adapter adapts")
    if untouched := sorted(expected - set(found)):
        problems.append(f"the adapter has no weights for {untouched[0]} (and {len(untouched) - 1} more)")
    for name in sorted(set(found) & expected):
        module = base.get_submodule(name)
        shapes = found[name]
        if shapes.get("A", (0, 0))[1] != module.in_features or shapes.get("B", (0, 0))[0] != module.out_features:
            problems.append(
                f"{name}: LoRA A {shapes.get('A')} / B {shapes.get('B')} do not fit "
                f"{module.in_features} -> {module.out_features}"
            )
            break
    if problems:
        raise ValueError(f"the adapter {adapter_dir} does not fit the base model {base_location}: {problems[0]}")


def _descendants(task: str, hierarchy: dict[str, list[str]]) -> Iterator[str]:
    for child in hierarchy.get(task, []):
        yield child
        yield from _descendants(child, hierarchy)


def _task_metrics(entry: dict, prefix: str) -> dict[str, float]:
    """lm-eval's "acc,none" -> "<prefix>/acc"; a filter other than "none" is kept in the name."""
    metrics = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or "," not in key:
            continue  # aliases, and stderr lm-eval could not compute ("N/A")
        metric, _, filter_name = key.partition(",")
        metrics[f"{prefix}/{metric if filter_name == 'none' else f'{metric}_{filter_name}'}"] = float(value)
    return metrics


def eval_metrics(results: dict, tasks: list[str], split: str) -> dict[str, float]:
    """`eval/<task>/<split>/<metric>`, and `eval/<task>/<split>/<subject>/<metric>` for everything under a group."""
    scores, hierarchy = results["results"], results.get("group_subtasks", {})
    metrics = {}
    for task in tasks:
        metrics |= _task_metrics(scores.get(task, {}), f"eval/{task}/{split}")
        for subtask in _descendants(task, hierarchy):
            subject = subtask.removeprefix(f"{task}_")
            metrics |= _task_metrics(scores.get(subtask, {}), f"eval/{task}/{split}/{subject}")
    return metrics


def log_task_inputs(results: dict, tasks: list[str], directory: Path) -> None:
    """Each task as a dataset input; its digest covers the configs of every subtask lm-eval ran."""
    hierarchy, configs = results.get("group_subtasks", {}), results.get("configs", {})
    for task in tasks:
        leaves = [t for t in (task, *_descendants(task, hierarchy)) if t in configs]
        content = json.dumps({leaf: configs[leaf] for leaf in leaves}, sort_keys=True, default=str)
        digest = hashlib.sha256(content.encode()).hexdigest()
        local = directory / task
        if not local.is_dir():  # one of lm-eval's own tasks
            import lm_eval

            local = Path(lm_eval.__file__).parent / "tasks"
        log_dataset_input(f"lm-eval:{task}", str(local), digest, context="evaluation")


def subject_accuracies(metrics: dict[str, float], task: str, split: str) -> dict[str, float]:
    prefix = f"eval/{task}/{split}/"
    return {
        key[len(prefix) : -len("/acc")]: value
        for key, value in metrics.items()
        if key.startswith(prefix) and key.endswith("/acc") and key.count("/") == 4
    }


def run_evaluate(cfg: DictConfig) -> str | None:
    """Evaluate; returns the MLflow run ID (None on processes other than the main one)."""
    started = time.perf_counter()
    requested = cfg.copy()
    cfg, finetune = evaluation_settings(cfg)
    evaluation, target_eval = cfg.evaluation, cfg.target.evaluation
    tasks = task_names(evaluation.tasks or target_eval.tasks)
    splits = eval_splits(evaluation.splits)
    chat, chat_reason = chat_template_choice(evaluation.apply_chat_template, finetune)
    manager = task_manager(task_dir(cfg))
    check_tasks(tasks, manager)
    is_main = PartialState().is_main_process
    base_only = bool(evaluation.base_only)
    run_name = f"evaluate-{cfg.target.name}-{'base' if base_only else 'adapter'}"
    upstream = finetune.info.run_id if finetune else None
    with stage_run(
        "evaluate", cfg, upstream_run=upstream, run_name=run_name, active=is_main, requested=requested
    ) as run:
        # The built-in tiny target is found by its build settings (built here only if no run has it).
        location = target_location(cfg.target, Path(cfg.output_dir) / (run.info.run_id if run else "rank") / "target")
        adapter_dir = None
        if not base_only:
            adapter_dir = adapter_of(finetune)
            check_adapter_fits(adapter_dir, location)
        if run:
            mlflow.set_tags({BASE_ONLY_TAG: str(base_only).lower(), CHAT_TEMPLATE_TAG: str(chat).lower()})
            mlflow.log_param("evaluation.chat_template_used", f"{str(chat).lower()} ({chat_reason})")

        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        gpu = torch.cuda.is_available()
        precision = evaluation.precision
        if precision == "auto":
            precision = "bfloat16" if gpu and torch.cuda.is_bf16_supported() else "float32"
        model = HFLM(
            pretrained=location,
            peft=str(adapter_dir) if adapter_dir else None,
            tokenizer=load_target_tokenizer(str(adapter_dir or location)),
            dtype=precision,
            device="cuda" if gpu else "cpu",
            batch_size=evaluation.batch_size or target_eval.batch_size,
        )
        num_fewshot = evaluation.num_fewshot if evaluation.num_fewshot is not None else target_eval.num_fewshot
        metrics, outputs = {}, {}
        for split in splits:
            outputs[split] = simple_evaluate(
                model=model,
                tasks=tasks,
                num_fewshot=num_fewshot,
                limit=evaluation.limit,
                task_manager=SplitTaskManager(manager, split),
                log_samples=False,
                apply_chat_template=chat,
                fewshot_as_multiturn=chat,  # few-shot examples as earlier turns, as conversations were trained
                random_seed=evaluation.seed,
                numpy_random_seed=evaluation.seed,
                torch_random_seed=evaluation.seed,
                fewshot_random_seed=evaluation.seed,
            )
            if is_main:
                metrics |= eval_metrics(outputs[split], tasks, split)
        if not is_main:
            return None
        metrics |= domain_means(metrics, *task_domains(cfg, tasks))
        for split, results in outputs.items():
            log_task_inputs(results, tasks, task_dir(cfg))
            mlflow.log_text(json.dumps(results, indent=2, default=str, sort_keys=True), f"eval/results_{split}.json")
        metrics["evaluate/seconds"] = time.perf_counter() - started
        mlflow.log_metrics(metrics)
        for task in tasks:
            for split in splits:
                if subjects := subject_accuracies(metrics, task, split):
                    title = f"{task} ({split}): accuracy per subject ({'base' if base_only else 'base + adapter'})"
                    plots.log_figure(plots.accuracy_bars(subjects, title), f"plots/{task}_{split}_subjects.png")
        for key in sorted(metrics):
            if key.count("/") == 3 and not key.endswith("_stderr"):
                print(f"{key:<44}{metrics[key]:.4f}")
        return run.info.run_id
