"""The warmup stage: teach the quality gates which tokens the MoE output does not help.

Reads the converted model from its convert run, trains only the router on a subset of the pool
with the HF Trainer, and leaves in the run: the router weights (`router/weights.safetensors`), the
resolved config, per-step loss and quality-gate metrics, and plots of per-sample good_ratio.
Under `accelerate launch` every process trains; only the main one talks to MLflow.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig, open_dict
from transformers import AutoTokenizer, set_seed

from mygo.config import load_config, split_overrides
from mygo.data.chat import ensure_chat_template, load_and_tokenize
from mygo.data.corruption import check_corruptions
from mygo.data.dedup import GROUPS_ARTIFACT
from mygo.data.pool import NOISE_FIELD, take_subset
from mygo.models import SelectMoeConfig, load_select_moe
from mygo.models.choices import TARGETED_LOSSES
from mygo.models.configuration_select_moe import select_moe_settings
from mygo.models.router_weights import ROUTER_WEIGHTS_FILE, save_router_weights
from mygo.stages.table import stage
from mygo.tracking import plots
from mygo.tracking.handoffs import model_dir_of
from mygo.tracking.pool_checks import log_decontamination
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import (
    UPSTREAM_TAG,
    check_upstream,
    get_run,
    log_pool_input,
    stage_run,
    tracking_overrides,
)
from mygo.training.hf_trainer import (
    CorruptingCollator,
    MlflowMetrics,
    PoolCollator,
    checkpoint_to_resume,
    precision_dtype,
    share_from_main,
    tokens_per_second,
    training_arguments,
    training_precision,
)
from mygo.training.router_trainer import PEFT_MODES, NoiseProbe, RouterTrainer, merged_model, prepare_router_training

logger = logging.getLogger(__name__)


def check_settings(cfg: DictConfig) -> None:
    """Fail on bad settings before minutes of loading."""
    SelectMoeConfig(**select_moe_settings(cfg.select_moe))
    if cfg.training.peft_mode not in PEFT_MODES:
        raise ValueError(
            f"training.peft_mode={cfg.training.peft_mode!r} is not valid; choose one of {list(PEFT_MODES)}"
        )
    if not 0 < cfg.dataset.subset_ratio <= 1:
        raise ValueError(f"dataset.subset_ratio must be in (0, 1], got {cfg.dataset.subset_ratio}")
    training_precision(cfg.training.precision)
    if cfg.select_moe.quality_loss_type in TARGETED_LOSSES:
        check_corruptions(cfg.corruption.fraction, list(cfg.corruption.kinds))


def settings_that_act(cfg: DictConfig) -> DictConfig:
    """The config as it acts, to be logged: corruptions only with a loss that learns from them, so a warmup
    with another loss (on a preset whose tuned objective corrupts) records `corruption.fraction=0`."""
    if cfg.select_moe.quality_loss_type in TARGETED_LOSSES or not cfg.corruption.fraction:
        return cfg
    acting = cfg.copy()
    with open_dict(acting):
        acting.corruption.fraction = 0.0
    return acting


def training_collator(cfg: DictConfig, tokenizer) -> PoolCollator:
    """Batches for the Trainer: corrupted on the fly when the quality loss learns from corruptions."""
    if cfg.select_moe.quality_loss_type not in TARGETED_LOSSES:
        return PoolCollator(tokenizer)
    corruption = cfg.corruption
    return CorruptingCollator(tokenizer, corruption.fraction, list(corruption.kinds), corruption.seed)


def convert_run_for(cfg: DictConfig) -> Run:
    """The given convert run (checked), or a finished conversion of `cfg.model`, made first if there is none."""
    if cfg.upstream.convert_run:
        return check_upstream(cfg.upstream.convert_run, "convert")
    overrides = [*tracking_overrides(cfg), f"model={cfg.model.name}", *split_overrides(cfg.upstream.convert_overrides)]
    convert_cfg = load_config("convert", overrides)
    with open_dict(convert_cfg):
        convert_cfg.model = cfg.model  # the warmup's preset, with any overrides it was given
    run_id, reused = run_or_reuse("convert", convert_cfg, stage("convert").load_runner())
    logger.info("convert run %s (%s)", run_id, "reused" if reused else "new")
    return get_run(run_id)


def prepare_data(cfg: DictConfig, tokenizer, is_main: bool):
    """The tokenized training subset and the probe sample (with its noise labels, when the pool has them)."""
    pool, tokenized = load_and_tokenize(cfg.dataset, tokenizer)
    usable = tokenized.filter(lambda count: count > 0, input_columns="num_label_tokens", desc="drop label-less")
    if len(usable) == 0:
        raise ValueError("no pool record keeps a label token after truncation; raise dataset.max_sequence_length")
    train_set = take_subset(usable, cfg.dataset.subset_ratio, cfg.dataset.seed, cfg.dataset.shuffle)
    probe_count = min(cfg.training.probe_samples, len(usable))
    probe_set = (
        take_subset(usable, probe_count / len(usable), cfg.dataset.seed + 1, shuffle=False) if probe_count else None
    )
    probe_noise = list(probe_set[NOISE_FIELD]) if probe_set is not None and pool.has_noise_labels else None
    if is_main:
        log_pool_input(pool, context="training")
        mlflow.log_metrics(pool.stats.metrics())
        if pool.dedup.settings.enabled:  # the training subset is drawn from the records dedup kept
            mlflow.log_metrics(pool.dedup.metrics())
            mlflow.log_text(pool.dedup.groups_jsonl(pool.records), GROUPS_ARTIFACT)
        log_decontamination(pool)
        mlflow.log_metrics(
            {
                "data/truncated": float(sum(tokenized["truncated"])),
                "data/no_label_tokens": float(len(tokenized) - len(usable)),
                "data/train_samples": float(len(train_set)),
                "data/train_tokens": float(sum(train_set["length"])),
            }
        )
    return train_set, probe_set, probe_noise


def log_router_plots(probe: NoiseProbe | None, probe_noise, history: list[dict]) -> None:
    if probe is not None and probe.scores is not None:
        quality = probe.scores.mean(axis=1)
        plots.log_figure(
            plots.good_ratio_histogram(quality, probe_noise, "per-sample good_ratio after warmup (probe sample)"),
            "plots/good_ratio_histogram.png",
        )
        plots.log_figure(
            plots.per_layer_bars(probe.scores, "good_ratio per layer (probe sample)"), "plots/good_ratio_per_layer.png"
        )
    if history:
        plots.log_figure(plots.per_layer_curves(history), "plots/good_ratio_per_layer_over_steps.png")


def run_warmup(cfg: DictConfig) -> str | None:
    """Warm up the router; returns the MLflow run ID (None on processes other than the main one)."""
    check_settings(cfg)
    requested, cfg = cfg, settings_that_act(cfg)  # run reuse and resume compare what was asked for
    started = time.perf_counter()
    precision = training_precision(cfg.training.precision)
    args = training_arguments(cfg.training, precision)
    is_main = args.process_index == 0
    run_name = f"warmup-{cfg.select_moe.quality_loss_type}"
    with stage_run("warmup", cfg, run_name=run_name, active=is_main, requested=requested) as run:
        with args.main_process_first(desc="convert and tokenize"):  # the others then reuse both
            convert_run = convert_run_for(cfg)
            model_dir = model_dir_of(convert_run)
            tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(model_dir))
            train_set, probe_set, probe_noise = prepare_data(cfg, tokenizer, is_main)
        checkpoint = None
        if run and cfg.training.resume:
            checkpoint = checkpoint_to_resume("warmup", requested, run.info.run_id)
        # Every process checkpoints into the main process's run directory, and resumes from the same checkpoint.
        run_id, checkpoint = share_from_main(args, [run.info.run_id if run else None, checkpoint])
        if run:
            mlflow.set_tag(UPSTREAM_TAG, convert_run.info.run_id)
        output_dir = Path(cfg.training.output_dir) / run_id
        args.output_dir = str(output_dir / "checkpoints")

        model = load_select_moe(model_dir, dtype=precision_dtype(precision), **select_moe_settings(cfg.select_moe))
        set_seed(cfg.training.seed)  # LoRA on the router starts from random weights: seed them
        model = prepare_router_training(model, cfg.training)
        collator = PoolCollator(tokenizer)
        train_collator = training_collator(cfg, tokenizer)
        metrics = MlflowMetrics(cfg.training.tracking_flush_s)
        callbacks = [metrics]
        probe = None
        if probe_set is not None:
            probe = NoiseProbe(
                probe_set, probe_noise, collator, cfg.training.probe_every, cfg.training.probe_batch_size, metrics.log
            )
            callbacks.append(probe)
        trainer = RouterTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            data_collator=train_collator,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if not is_main:
            return None

        # The weights go to disk before anything that needs the tracking store (which may be down by now).
        weights = save_router_weights(merged_model(trainer.model), output_dir / "router" / ROUTER_WEIGHTS_FILE)
        metrics.flush(weights)
        mlflow.log_artifact(str(weights), "router")
        log_router_plots(probe, probe_noise, metrics.history)
        seconds = time.perf_counter() - started
        mlflow.log_metrics(
            {
                "warmup/seconds": seconds,
                "train/tokens_per_s": tokens_per_second(
                    train_set["length"], cfg.training.epochs, result.metrics["train_runtime"]
                ),
                "train/final_loss": result.training_loss,
            }
        )
        logger.info("warmup run %s finished in %.0f s; router weights %s", run_id, seconds, weights)
        return run_id
