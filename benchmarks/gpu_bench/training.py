"""The training parts: optimizer steps under accelerate as the Trainer takes them (`train_steps`), for warmup (the
gates of the converted Select-MoE with mygo's quality loss, configs/warmup.yaml's settings) and finetune (LoRA on
Qwen2.5-1.5B's shape, configs/target/qwen2_5_1_5b.yaml's recipe).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gpu_bench.harness import Context, TimeBox, free_memory, read_config
from gpu_bench.workload import micro_batches, padded


def train_steps(
    ctx: Context, box: TimeBox, metrics: dict, model, trainable: list, batches: list, training: dict, steps: int
) -> None:
    """Optimizer steps under accelerate, as the Trainer takes them (autocast bf16 on a GPU, accumulation, gradient
    clipping, AdamW); the first step (allocations, kernel choice) is not timed."""
    import torch
    from accelerate import Accelerator

    accumulation = max(1, min(training["accumulation"], ctx.sizes.accumulation_cap))
    accelerator = Accelerator(
        mixed_precision="bf16" if ctx.cuda else "no", gradient_accumulation_steps=accumulation, cpu=not ctx.cuda
    )
    optimizer = torch.optim.AdamW(trainable, lr=training["learning_rate"], weight_decay=training["weight_decay"])
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pad = getattr(model.config, "pad_token_id", None) or 0
    timed_steps = timed_tokens = 0
    timed_s = 0.0
    losses = []
    batches = iter(batches)
    for step in range(steps):
        if step > 1 and box.left() <= 0:  # the untimed first step and one timed, whatever the box
            metrics["stopped_by_time_box"] = True
            break
        tokens = 0
        ctx.sync()
        started = time.perf_counter()
        for _ in range(accumulation):
            rows, labels = next(batches)
            batch = padded(rows, pad, ctx.device, labels)
            tokens += int(batch["attention_mask"].sum())
            with accelerator.accumulate(model):
                loss = training["loss"](model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, training["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
        losses.append(float(loss.detach()))
        ctx.sync()
        seconds = time.perf_counter() - started
        if step == 0:
            metrics["first_step_s"] = seconds
        else:
            timed_steps, timed_tokens, timed_s = timed_steps + 1, timed_tokens + tokens, timed_s + seconds
    if not all(math.isfinite(loss) for loss in losses):
        raise FloatingPointError(f"non-finite loss: {losses}")
    configured = training["accumulation"]
    metrics.update(
        micro_batch=training["micro_batch"],
        accumulation=accumulation,
        configured_accumulation=configured,
        timed_steps=timed_steps,
        losses=losses,
        trainable_parameters=sum(p.numel() for p in trainable),
    )
    if timed_steps:
        micro_per_s = timed_steps * accumulation / timed_s
        metrics.update(
            optimizer_steps_per_s=timed_steps / timed_s,
            micro_steps_per_s=micro_per_s,
            tokens_per_s=timed_tokens / timed_s,
            configured_step_s=configured / micro_per_s,  # one step of the configured global batch, projected
        )
    accelerator.free_memory()


def recipe_of(training: dict, accumulation: int, micro: int, loss: Callable) -> dict:
    """`train_steps`' recipe: a config's `training` block (warmup's, or the target's) with the batch plan and loss."""
    return dict(
        accumulation=accumulation,
        micro_batch=micro,
        learning_rate=training["learning_rate"],
        weight_decay=training["weight_decay"],
        max_grad_norm=training["max_grad_norm"],
        loss=loss,
    )


def part_warmup(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    from mygo.models import SelectMoeConfig
    from mygo.models.configuration_select_moe import select_moe_settings
    from mygo.models.router_weights import is_router_parameter

    cfg = read_config("warmup.yaml")
    training = cfg["training"]
    if training["peft_mode"] != "full_rank":
        raise ValueError(f"configs/warmup.yaml training.peft_mode={training['peft_mode']!r}: this part runs full_rank")
    _, model = ctx.models(metrics)
    ctx.select_moe = None  # trained from here on: no later part may take it for the converted model
    settings = select_moe_settings(cfg["select_moe"])
    SelectMoeConfig(**settings)  # the warmup stage's settings check
    if settings.get("trash_expert_mode", model.config.trash_expert_mode) != model.config.trash_expert_mode:
        notes.append("trash_expert_mode differs from the conversion's; the conversion's is kept (set at build time)")
    for key, value in settings.items():  # what load_select_moe applies from the warmup config
        if key != "trash_expert_mode":
            setattr(model.config, key, value)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(is_router_parameter(name, training["train_router_gates"]))
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:  # as prepare_router_training: AdamW steps on bf16 gates would lose the updates
        parameter.data = parameter.data.float()
    micro = training["micro_batch_size"]
    accumulation = training["batch_size"] // micro
    count = ctx.sizes.warmup_steps * min(accumulation, ctx.sizes.accumulation_cap)
    batches = micro_batches(ctx.sizes, count, micro, model.config.vocab_size, ctx.sizes.max_length, seed=3)

    def loss(model, batch):  # L_lm + quality_loss_weight x L_quality (mygo.models.losses), as RouterTrainer's
        return model(**batch, output_router_logits=True).loss

    recipe = recipe_of(training, accumulation, micro, loss)
    metrics["quality_loss_type"] = model.config.quality_loss_type
    train_steps(ctx, box, metrics, model, trainable, batches, recipe, ctx.sizes.warmup_steps)
    del model, trainable
    ctx.free()


def part_finetune(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = read_config("target/qwen2_5_1_5b.yaml")
    lora, training = target["lora"], target["training"]
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(ctx.device):
        model = Qwen2ForCausalLM._from_config(Qwen2Config(**ctx.sizes.target), dtype=ctx.dtype)
    ctx.sync()
    metrics["build_s"] = time.perf_counter() - started
    metrics["total_parameters"] = sum(p.numel() for p in model.parameters())
    model = get_peft_model(  # as the finetune stage's lora_model
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
        ),
    )
    if training["gradient_checkpointing"]:
        # transformers 5 renamed it (the old name warns); the GPU machine's transformers may be older
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    micro = training["micro_batch_size"]
    accumulation = training["batch_size"] // micro
    count = ctx.sizes.finetune_steps * min(accumulation, ctx.sizes.accumulation_cap)
    max_length = min(ctx.sizes.max_length, target["max_sequence_length"])
    batches = micro_batches(ctx.sizes, count, micro, ctx.sizes.target["vocab_size"], max_length, seed=4)

    def loss(model, batch):
        return model(**batch).loss

    recipe = recipe_of(training, accumulation, micro, loss)
    metrics["lora"] = {key: lora[key] for key in ("r", "alpha", "dropout", "target_modules")}
    metrics["gradient_checkpointing"] = bool(training["gradient_checkpointing"])
    train_steps(ctx, box, metrics, model, trainable, batches, recipe, ctx.sizes.finetune_steps)
    del model, trainable
    free_memory()
