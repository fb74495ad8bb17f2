"""The finetune stage: LoRA-tune the target model on the selected data, with peft and the HF Trainer.

Reads the selection of a select run (`selection/selected_data.jsonl`) or any JSONL file in the pool
format, encodes it as the pool is encoded (assistant-only labels by default), trains LoRA adapters
with the target preset's recipe (`configs/target/`), and leaves in the run: the adapter and the
tokenizer (`adapter/`, `save_pretrained`), the loss curve, tokens/s, the tag `mygo.target_path`
(the base model the adapter belongs to), and, unless `tracking.log_model` is false, the tuned model as an
MLflow Model (`runs:/<id>/model`, registered; `mygo.tracking.models`). Under `accelerate launch` every
process trains; only the main one talks to MLflow.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, Trainer, set_seed

from mygo.atomic import atomic_directory
from mygo.data.chat import ChatEncoding, tokenize_pool, tokenizing_processes
from mygo.data.pool import load_records_file
from mygo.stages.target import load_target_tokenizer, target_location
from mygo.tracking import plots
from mygo.tracking.handoffs import ADAPTER_ARTIFACT, ADAPTER_PATH_TAG, TARGET_PATH_TAG, selected_data_of
from mygo.tracking.models import log_tuned_model
from mygo.tracking.runs import UPSTREAM_TAG, check_upstream, log_pool_input, stage_run
from mygo.training.hf_trainer import (
    MlflowMetrics,
    PoolCollator,
    checkpoint_to_resume,
    precision_dtype,
    share_from_main,
    tokens_per_second,
    training_arguments,
    training_precision,
)

logger = logging.getLogger(__name__)


def recipe(cfg: DictConfig) -> DictConfig:
    """The Trainer's settings: the target's recipe (target.training) plus the stage's mechanics (training)."""
    return OmegaConf.create({**OmegaConf.to_container(cfg.target.training), **OmegaConf.to_container(cfg.training)})


def check_settings(cfg: DictConfig) -> None:
    """Fail on bad settings before minutes of loading."""
    if bool(cfg.upstream.select_run) == bool(cfg.data.path):
        raise ValueError(
            "give exactly one source of training data: upstream.select_run (-P select_run=<run id>) "
            "or data.path (-P data_path=<file.jsonl>)"
        )
    if not cfg.target.lora.target_modules:
        raise ValueError("target.lora.target_modules is empty: LoRA needs modules to adapt")
    training_precision(cfg.target.training.precision)


def training_data_file(cfg: DictConfig) -> tuple[Path, str | None]:
    """(the JSONL file to train on, the select run it came from or None)."""
    if cfg.data.path:
        if not Path(cfg.data.path).is_file():  # before the target is built or loaded
            raise FileNotFoundError(f"data.path: no such file {cfg.data.path}")
        return Path(cfg.data.path), None
    run = check_upstream(cfg.upstream.select_run, "select")
    return selected_data_of(run), run.info.run_id


def prepare_data(cfg: DictConfig, data_file: Path, tokenizer, is_main: bool):
    """The tokenized training records (those that keep a label token after truncation)."""
    records = load_records_file(data_file, cfg.data.skip_bad_lines)
    options = ChatEncoding(
        max_sequence_length=cfg.target.max_sequence_length,
        full_sequence_prediction=cfg.data.full_sequence_prediction,
        mask_special_tokens=cfg.data.mask_special_tokens,
        train_on_tool_turns=cfg.data.train_on_tool_turns,
    )
    processes = tokenizing_processes(cfg.data.num_proc, len(records.records))
    tokenized = tokenize_pool(records, tokenizer, options, Path(cfg.data.cache_dir) / "tokenized", processes)
    usable = tokenized.filter(lambda count: count > 0, input_columns="num_label_tokens", desc="drop label-less")
    if len(usable) == 0:
        raise ValueError(
            f"{data_file}: no record keeps a label token after truncation to "
            f"target.max_sequence_length={cfg.target.max_sequence_length}"
        )
    if is_main:
        name = f"finetune_data:{data_file.name}"  # data.path decides reuse; a selection is its run's artifact
        log_pool_input(records, context="training", name=name, decides_reuse=bool(cfg.data.path))
        metrics = records.stats.metrics()
        metrics = {key.replace("data/pool_records", "data/records"): value for key, value in metrics.items()}
        metrics |= {
            "data/truncated": float(sum(tokenized["truncated"])),
            "data/no_label_tokens": float(len(tokenized) - len(usable)),
            "data/train_samples": float(len(usable)),
            "data/train_tokens": float(sum(usable["length"])),
        }
        if records.has_noise_labels:  # the demo pool's injected noise that made it into the training data
            metrics["data/injected_noise"] = float(sum(kind is not None for kind in usable["mygo_noise"]))
        mlflow.log_metrics(metrics)
    return usable


def lora_model(location: str, cfg: DictConfig, precision: str) -> torch.nn.Module:
    """The target with LoRA adapters on `target.lora.target_modules`; everything else frozen."""
    model = AutoModelForCausalLM.from_pretrained(location, dtype=precision_dtype(precision))
    lora = cfg.target.lora
    try:
        model = get_peft_model(
            model,
            LoraConfig(
                task_type="CAUSAL_LM",
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
            ),
        )
    except ValueError as error:  # peft names the modules it could not find
        raise ValueError(f"target.lora.target_modules={list(lora.target_modules)}: {error}") from error
    if cfg.target.training.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA: %d trainable of %d parameters", trainable, total)
    return model


def run_finetune(cfg: DictConfig) -> str | None:
    """LoRA-tune the target; returns the MLflow run ID (None on processes other than the main one)."""
    check_settings(cfg)
    started = time.perf_counter()
    settings = recipe(cfg)
    precision = training_precision(settings.precision)
    args = training_arguments(settings, precision)
    is_main = args.process_index == 0
    with stage_run("finetune", cfg, run_name=f"finetune-{cfg.target.name}", active=is_main) as run:
        data_file = location = upstream = None
        if is_main:  # the others take the main process's resolved paths: one build, one download
            data_file, upstream = training_data_file(cfg)
            run_dir = Path(cfg.training.output_dir) / run.info.run_id
            location = target_location(cfg.target, run_dir / "target")
            mlflow.set_tag(TARGET_PATH_TAG, location)
            if upstream:
                mlflow.set_tag(UPSTREAM_TAG, upstream)
        checkpoint = checkpoint_to_resume("finetune", cfg, run.info.run_id) if is_main and cfg.training.resume else None
        shared = [run.info.run_id if run else None, data_file, location, checkpoint]
        run_id, data_file, location, checkpoint = share_from_main(args, shared)
        output_dir = Path(cfg.training.output_dir) / run_id
        args.output_dir = str(output_dir / "checkpoints")

        tokenizer = load_target_tokenizer(location)
        with args.main_process_first(desc="tokenize"):  # the others then load the cached encoding
            train_set = prepare_data(cfg, Path(data_file), tokenizer, is_main)
        set_seed(settings.seed)  # LoRA's initial weights are random: the same seed, the same start
        model = lora_model(location, cfg, precision)
        metrics = MlflowMetrics(cfg.training.tracking_flush_s)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            data_collator=PoolCollator(tokenizer),
            processing_class=tokenizer,
            callbacks=[metrics],
        )
        result = trainer.train(resume_from_checkpoint=checkpoint)
        if not is_main:
            return None

        adapter_dir = output_dir / ADAPTER_ARTIFACT
        with atomic_directory(adapter_dir) as saving:
            trainer.model.save_pretrained(saving)
            tokenizer.save_pretrained(saving)
        metrics.flush(adapter_dir)  # the adapter is on disk before anything that needs the tracking store
        mlflow.log_artifacts(str(adapter_dir), ADAPTER_ARTIFACT)
        mlflow.set_tag(ADAPTER_PATH_TAG, str(adapter_dir.resolve()))
        plots.log_figure(plots.metric_curve(metrics.history, "train/loss", "fine-tuning loss"), "plots/loss.png")
        extra = {}
        if cfg.tracking.get("log_model", True):
            logging_started = time.perf_counter()
            log_tuned_model(cfg, trainer.model, tokenizer, location, upstream)
            extra["finetune/log_model_seconds"] = time.perf_counter() - logging_started
        seconds = time.perf_counter() - started
        mlflow.log_metrics(
            {
                "finetune/seconds": seconds,
                "train/tokens_per_s": tokens_per_second(
                    train_set["length"], settings.epochs, result.metrics["train_runtime"]
                ),
                "train/final_loss": result.training_loss,
            }
            | extra
        )
        logger.info("finetune run %s finished in %.0f s; adapter %s", run_id, seconds, adapter_dir)
        return run_id
