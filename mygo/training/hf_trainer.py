"""HF Trainer plumbing shared by the stages that train (warmup, finetune): arguments, batches, MLflow logs.

The Trainer brings accelerate (one GPU, DDP, FSDP), bf16, gradient accumulation, checkpoints and
progress bars; what is here maps mygo's configs onto it and its logs onto MLflow's metric names.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from pathlib import Path

import mlflow
import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig
from transformers import DataCollatorForSeq2Seq, TrainerCallback, TrainingArguments

from mygo.config import config_hash
from mygo.data.corruption import Vocabulary, check_corruptions, corrupt_batch
from mygo.tracking.failures import TrackingUnavailable
from mygo.tracking.redaction import redact_text

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "float32")


def training_precision(setting: str) -> str:
    if setting not in PRECISIONS:
        raise ValueError(f"training.precision={setting!r} is not valid; choose one of {list(PRECISIONS)}")
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return setting


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype to load weights in for a resolved precision (`training_precision`)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def gradient_accumulation(training_cfg: DictConfig, processes: int) -> int:
    """Steps to accumulate so that micro batches on all processes add up to the global batch."""
    per_step = training_cfg.micro_batch_size * processes
    if training_cfg.batch_size % per_step:
        raise ValueError(
            f"training.batch_size={training_cfg.batch_size} is not a multiple of micro_batch_size "
            f"({training_cfg.micro_batch_size}) x processes ({processes})"
        )
    return training_cfg.batch_size // per_step


def training_arguments(training: DictConfig, precision: str) -> TrainingArguments:
    """The Trainer's arguments; creating them joins the process group under `accelerate launch`/`torchrun`."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by every distributed launcher
    return TrainingArguments(
        output_dir=training.output_dir,  # per run below, once the run ID is known
        per_device_train_batch_size=training.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation(training, processes),
        learning_rate=training.learning_rate,
        num_train_epochs=training.epochs,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=training.lr_scheduler,
        max_grad_norm=training.max_grad_norm,
        seed=training.seed,
        bf16=precision == "bf16",
        gradient_checkpointing=training.gradient_checkpointing,
        logging_steps=training.logging_steps,
        save_strategy="steps" if training.save_steps else "no",
        save_steps=training.save_steps or 500,
        report_to="none",  # mygo logs to MLflow itself, under its own metric names
        train_sampling_strategy="group_by_length",  # batches of similar length: little padding
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # several CPU processes then join one gloo group
    )


RESUMED_FROM_TAG = "mygo.resumed_from"
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: a checkpoint that has it is complete


def _step(checkpoint: Path) -> int:
    suffix = checkpoint.name.rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else -1


def resume_checkpoint(stage: str, digest: str, output_root: Path, current_run: str) -> tuple[str | None, str | None]:
    """(the newest complete Trainer checkpoint of an unfinished run of `stage` with this config, that run)."""
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=(
            f"tags.`mygo.stage` = '{stage}' and tags.`mygo.config_hash` = '{digest}' "
            "and attributes.status != 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    for run in runs:
        if run.info.run_id == current_run:
            continue
        checkpoints = sorted((output_root / run.info.run_id / "checkpoints").glob("checkpoint-*"), key=_step)
        for checkpoint in reversed(checkpoints):
            if (checkpoint / TRAINER_STATE).is_file():
                return str(checkpoint), run.info.run_id
    return None, None


def checkpoint_to_resume(stage: str, cfg: DictConfig, run_id: str) -> str | None:
    """`training.resume`: the newest complete checkpoint of an unfinished run with the same config, recorded."""
    checkpoint, previous = resume_checkpoint(stage, config_hash(cfg), Path(cfg.training.output_dir), run_id)
    if checkpoint is None:
        logger.info("training.resume: no unfinished %s run with this config left a checkpoint; starting anew", stage)
        return None
    mlflow.set_tag(RESUMED_FROM_TAG, previous)
    mlflow.log_param("resumed_from_checkpoint", checkpoint)
    logger.info("resuming %s run %s from %s", stage, previous, checkpoint)
    return checkpoint


def share_from_main(args: TrainingArguments, values: list):
    """The main process's values on every process (run ID, resolved paths); unchanged with one process."""
    return broadcast_object_list(list(values), from_process=0) if args.world_size > 1 else list(values)


def tokens_per_second(lengths: list[int], epochs: float, runtime_s: float) -> float:
    return sum(lengths) * epochs / max(runtime_s, 1e-9)


class PoolCollator:
    """Pads input_ids and labels (-100) of the model's columns; drops bookkeeping columns (id, source, ...)."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return self.pad([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])


class CorruptingCollator(PoolCollator):
    """PoolCollator that corrupts part of every batch on the fly and adds the gate's `quality_targets`.

    See `mygo.data.corruption`. Each batch's generator is seeded by `seed` and the batch's own tokens, so a
    run resumed from a checkpoint corrupts the rest of its batches exactly as the uninterrupted run would,
    and a sample meets other corruptions in other epochs (batches are reshuffled).
    """

    def __init__(self, tokenizer, fraction: float, kinds: list[str], seed: int):
        super().__init__(tokenizer)
        check_corruptions(fraction, kinds)
        self.fraction, self.kinds = fraction, list(kinds)
        self.seed = seed
        self.vocabulary = Vocabulary(len(tokenizer), frozenset(tokenizer.all_special_ids))

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        tokens = np.concatenate([np.asarray(f["input_ids"], dtype=np.int64) for f in features])
        rng = np.random.default_rng([self.seed, zlib.crc32(tokens.tobytes())])
        samples, _ = corrupt_batch(features, self.fraction, self.kinds, rng, self.vocabulary)
        batch = super().__call__(samples)
        width = batch["input_ids"].shape[1]
        targets = torch.full((len(samples), width), -100.0)
        for row, sample in enumerate(samples):
            targets[row, : len(sample["quality_targets"])] = torch.tensor(sample["quality_targets"])
        batch["quality_targets"] = targets
        return batch


# Trainer log keys -> MLflow metric names; mygo's own keys ("loss/...", "quality_gate/...") pass through.
TRAINER_METRICS = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "epoch": "train/epoch",
    "train_runtime": "train/runtime_s",
    "train_samples_per_second": "train/samples_per_s",
    "train_steps_per_second": "train/steps_per_s",
}


class MlflowMetrics(TrainerCallback):
    """Sends the Trainer's logs to the MLflow run (main process only) and keeps their history.

    Logs are sent by a thread of their own, in order, so training never waits on the tracking store: an
    unreachable one (whatever MLflow's HTTP retry settings, which retry a call for minutes by default)
    only makes the logs wait in a buffer until it answers again. After training the stage saves its
    weights to disk first, then `flush`es: what is still unsent after `flush_timeout_s` is reported as
    `TrackingUnavailable`, naming where the weights are.
    """

    def __init__(self, flush_timeout_s: float = 120.0, retry_every_s: float = 2.0):
        self.history: list[dict[str, float]] = []
        # (metrics, step, timestamp in ms): the timestamp is fixed when the log is made, so a resend of a log
        # that did arrive (the answer was lost) is the same row and SQL stores drop it as a duplicate.
        self.pending: list[tuple[dict[str, float], int, int]] = []
        self.flush_timeout_s, self.retry_every_s = flush_timeout_s, retry_every_s
        self.run_id: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self._failing = False

    def _send_pending(self, client: mlflow.MlflowClient) -> bool:
        while True:
            with self._lock:
                if not self.pending:
                    break
                metrics, step, timestamp = self.pending[0]
            try:
                rows = [Metric(key, value, timestamp, step) for key, value in metrics.items()]
                client.log_batch(self.run_id, metrics=rows, synchronous=True)
            except (MlflowException, OSError) as error:
                if not self._failing:
                    logger.warning("tracking store unreachable, buffering metrics and training on: %s", error)
                self._failing = True
                return False
            with self._lock:
                self.pending.pop(0)
        if self._failing:
            logger.info("tracking store reachable again: buffered metrics sent")
        self._failing = False
        return True

    def _send_forever(self) -> None:
        client = mlflow.MlflowClient()
        while True:
            self._wake.wait(timeout=self.retry_every_s)
            self._wake.clear()
            self._send_pending(client)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            if "/" in key:
                metrics[key] = float(value)
            elif key in TRAINER_METRICS:
                metrics[TRAINER_METRICS[key]] = float(value)
        if metrics:
            self.history.append({"step": state.global_step, **metrics})
            self.log(metrics, state.global_step)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record metrics as soon as the tracking store takes them; never waits for it."""
        if self.run_id is None:  # the sender has no active run of its own: MLflow's is per thread
            self.run_id = mlflow.active_run().info.run_id
        with self._lock:
            self.pending.append((metrics, step, int(time.time() * 1000)))
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_forever, name="mygo-metrics", daemon=True)
            self._sender.start()
        self._wake.set()

    def flush(self, weights: Path) -> None:
        """Wait up to `flush_timeout_s` for the buffered logs to reach the store; else `TrackingUnavailable`,
        naming the weights (saved before this) and what is missing."""
        deadline = time.monotonic() + self.flush_timeout_s
        while True:
            with self._lock:
                unsent = list(self.pending)
            if not unsent:
                return
            if time.monotonic() > deadline:
                break
            self._wake.set()
            time.sleep(0.2)
        give_up_on_tracking()
        uri = redact_text(mlflow.get_tracking_uri())
        raise TrackingUnavailable(
            f"the tracking store {uri} stayed unreachable for {self.flush_timeout_s:.0f} s after training: "
            f"{len(unsent)} metric logs of steps {unsent[0][1]}-{unsent[-1][1]} were not recorded. The trained "
            f"weights are saved at {weights}; the run {self.run_id} stays RUNNING until the next stage run "
            "on this machine closes it"
        )


def give_up_on_tracking() -> None:
    """The store is down and this process is about to fail: its last calls (the failure tag, closing the run)
    try once each instead of retrying for minutes."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
