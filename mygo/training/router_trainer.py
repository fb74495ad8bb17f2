"""Training the router with the HF Trainer: which parameters train, what gets measured, where it goes.

The Trainer brings what warmup needs from a mature loop: accelerate (one GPU, DDP, FSDP), bf16,
gradient accumulation, progress bars and checkpoints. mygo adds:
- `prepare_router_training`: freeze all but the router (full_rank) or put LoRA on it (lora);
- `RouterTrainer`: the loss parts and quality-gate statistics of every step, averaged over each
  logging window (and over processes) and merged into the Trainer's logs;
- (`mygo.training.MlflowMetrics` sends those logs to MLflow under stable names;)
- `NoiseProbe`: a fixed sample of the pool, scored every few steps, so one sees whether the gates
  tell injected low-quality samples apart while they train.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import mlflow
import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainerCallback

from mygo.analysis.noise_metrics import mean_by_kind, noise_auroc, noise_mask, noise_metrics
from mygo.analysis.sample_summaries import per_sample_quality, token_good_ratio_moments
from mygo.models.router_weights import is_router_parameter

logger = logging.getLogger(__name__)

PEFT_MODES = ("full_rank", "lora")


def prepare_router_training(model: torch.nn.Module, training_cfg) -> torch.nn.Module:
    """Only router parameters train; everything else is frozen (no gradients stored for it)."""
    mode = training_cfg.peft_mode
    if mode == "full_rank":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(is_router_parameter(name, training_cfg.train_router_gates))
    elif mode == "lora":
        lora = training_cfg.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                # The MoE router gate is a bare nn.Parameter, which peft targets by parameter name.
                target_parameters=list(lora.target_parameters) or None,
                target_modules=list(lora.target_modules) or None,
            ),
        )
        for name, parameter in model.named_parameters():
            if is_router_parameter(name, include_router_gates=False):
                parameter.requires_grad_(True)
    else:
        raise ValueError(f"training.peft_mode={mode!r} is not valid; choose one of {list(PEFT_MODES)}")
    # Trained parameters stay float32 even when the frozen model is bf16: AdamW steps need the precision.
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"training.peft_mode={mode!r} leaves no trainable parameter; check the LoRA targets")
    logger.info("%s: %d trainable parameters", mode, trainable)
    return model


def merged_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain Select-MoE model, with LoRA merged into the router weights when there is LoRA."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


class RouterTrainer(Trainer):
    """A Trainer that records the loss parts and good_ratio statistics of every training step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The model's loss is a per-batch mean plus router terms; let the Trainer scale it for accumulation.
        self.model_accepts_loss_kwargs = False
        self._window: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, output_router_logits=True)
        if model.training:
            self._record(outputs, inputs.get("attention_mask"))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    @torch.no_grad()
    def _record(self, outputs, attention_mask) -> None:
        config = self.model.config
        quality = outputs.quality_loss.detach().double().cpu()
        balance = outputs.aux_loss.detach().double().cpu() if outputs.aux_loss is not None else torch.zeros(())
        total = outputs.loss.detach().double().cpu()
        lm = total - config.quality_loss_weight * quality
        if outputs.aux_loss is not None:
            lm = lm - config.router_aux_loss_coef * balance
        total_ratio, squares, count = (
            t.double().cpu() for t in token_good_ratio_moments(outputs.router_logits, attention_mask)
        )
        window = self._window
        window["steps"] = window["steps"] + 1
        for name, value in (
            ("loss/total", total),
            ("loss/lm", lm),
            ("loss/quality", quality),
            ("loss/load_balancing", balance),
        ):
            window[name] = window[name] + value
        window["ratio_sum"] = window["ratio_sum"] + total_ratio
        window["ratio_squares"] = window["ratio_squares"] + squares
        window["ratio_count"] = window["ratio_count"] + count

    def _window_metrics(self) -> dict[str, float]:
        keys = sorted(self._window)
        packed = torch.cat([self._window[key].reshape(-1) for key in keys]).to(self.args.device)
        packed = self.accelerator.reduce(packed, reduction="sum")  # every process logs at the same steps
        values, offset = {}, 0
        for key in keys:
            size = self._window[key].numel()
            values[key] = packed[offset : offset + size].cpu()
            offset += size
        self._window.clear()
        steps = values.pop("steps").item()
        metrics = {name: value.item() / steps for name, value in values.items() if name.startswith("loss/")}
        count = values["ratio_count"].clamp(min=1)
        layer_mean = values["ratio_sum"] / count
        mean = values["ratio_sum"].sum() / count.sum()
        variance = values["ratio_squares"].sum() / count.sum() - mean**2
        metrics["quality_gate/good_ratio_mean"] = mean.item()
        metrics["quality_gate/good_ratio_std"] = variance.clamp(min=0).sqrt().item()
        for layer, value in enumerate(layer_mean.tolist()):
            metrics[f"quality_gate/layer_{layer:02d}/good_ratio_mean"] = value
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._window and "loss" in logs:  # a training-step log, not the end-of-training summary
            logs.update(self._window_metrics())
        super().log(logs, start_time)


class NoiseProbe(TrainerCallback):
    """Scores a fixed sample of the pool every `every` steps: mean good_ratio over answer tokens, clean vs
    injected samples, overall and per noise kind (and per layer).

    `noise` holds each probe sample's injected kind (None when clean), or is None for a pool without
    labels; then only the overall mean is logged. The last scores stay for the end-of-run histogram.
    """

    def __init__(self, probe_set, noise: list[str | None] | None, collator, every: int, batch_size: int, log=None):
        self.probe_set, self.noise, self.collator = probe_set, noise, collator
        self.log = log or (lambda metrics, step: mlflow.log_metrics(metrics, step=step))  # e.g. MlflowMetrics.log
        self.every, self.batch_size = every, batch_size
        self.scores: np.ndarray | None = None  # [samples, layers]

    @torch.inference_mode()
    def score(self, model) -> np.ndarray:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        scores = []
        for start in range(0, len(self.probe_set), self.batch_size):
            batch = self.collator(
                self.probe_set.select(range(start, min(start + self.batch_size, len(self.probe_set))))
            )
            answer = (batch.pop("labels") != -100).to(device)  # the gate judges answers: prompts are not scored
            batch = {key: value.to(device) for key, value in batch.items()}
            outputs = model(**batch, output_router_logits=True)
            scores.append(per_sample_quality(outputs.router_logits, answer).float().cpu())
        model.train(was_training)
        return torch.cat(scores).numpy()

    def metrics(self, scores: np.ndarray) -> dict[str, float]:
        quality = scores.mean(axis=1)
        metrics = {"probe/good_ratio_mean": float(quality.mean())}
        noisy = noise_mask(self.noise) if self.noise is not None else None
        if noisy is not None:
            metrics["probe/good_ratio_clean"] = float(quality[~noisy].mean())
            metrics["probe/good_ratio_noisy"] = float(quality[noisy].mean())
            metrics |= noise_metrics(quality, self.noise, prefix="probe/noise_auroc")
            metrics |= {f"probe/good_ratio/{k}": v for k, v in mean_by_kind(quality, self.noise).items()}
            for layer in range(scores.shape[1]):
                metrics[f"probe/layer_{layer:02d}/noise_auroc"] = noise_auroc(scores[:, layer], noisy)
        return metrics

    def _probe(self, state, model) -> None:
        self.scores = self.score(model)
        if state.is_world_process_zero:
            self.log(self.metrics(self.scores), state.global_step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._probe(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self._probe(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.every or state.global_step % self.every:
            self._probe(state, model)
