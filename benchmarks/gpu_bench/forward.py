"""The forward part: OLMoE-1B-7B's shape converted to Select-MoE, the decoder forward over a length-sorted batch
plan like the scorer's, timed against OLMoE on the same weights and batches (and with OLMoE's experts kernel), its
MFU, and one profiled forward of each model split by module kind (attention, router, experts, quality gate).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gpu_bench.harness import Context, TimeBox, read_config
from gpu_bench.workload import active_parameters, decoder_flops, padded, peak_bf16, sample_lengths, token_rows


def part_forward(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    import torch

    from mygo.models.scoring import length_batches

    source, select_moe = ctx.models(metrics, keep_source=True)
    config = select_moe.config
    score = read_config("score.yaml")["score"] | ctx.sizes.score
    lengths = np.sort(sample_lengths(ctx.sizes, ctx.sizes.forward_rows, seed=1))[::-1]
    rows, _ = token_rows(lengths, config.vocab_size, seed=1)
    plan = length_batches(lengths, score["max_batch_tokens"], score["max_batch_size"])
    batches = [padded(rows[part], config.pad_token_id, ctx.device) for part in plan]
    metrics["experts_implementation"] = {
        "olmoe": source.config._experts_implementation,
        "select_moe": config._experts_implementation,
    }
    metrics["batch_plan"] = {"rows": len(rows), "batches": len(plan), "max_batch_tokens": score["max_batch_tokens"]}

    # mygo's Select-MoE may not get OLMoE's experts kernel (transformers picks it per model class, see
    # benchmarks/README.md): the same weights with OLMoE's kernel switched in tell how much of the ratio that is.
    own, theirs = config._experts_implementation, source.config._experts_implementation
    variants = {"olmoe": (source, theirs), "select_moe": (select_moe, own)}
    if own != theirs:
        notes.append(f"Select-MoE runs experts_implementation={own!r}, OLMoE {theirs!r}")
        variants["select_moe_same_kernel"] = (select_moe, theirs)

    def forward(variant: str, batch: dict):
        model, kernel = variants[variant]
        previous = model.config._experts_implementation
        model.config._experts_implementation = kernel  # the experts modules read it at every call
        try:
            with torch.inference_mode():  # the decoder with the router outputs, as score_rows runs it
                return model.model(**batch, output_router_logits=True)
        finally:
            model.config._experts_implementation = previous

    for variant in variants:  # kernels chosen and memory pools grown for the longest and shortest shapes
        forward(variant, batches[0])
        forward(variant, batches[-1])
    times = {variant: [math.inf] * len(batches) for variant in variants}
    measured = 0
    reserve = 0.15 * box.seconds  # for the profiles
    for sweep in range(2):  # each batch's best of two, the variants back to back in turns
        for i, batch in enumerate(batches):
            if (sweep or i) and box.left() < reserve:  # one batch at least, whatever the box
                break
            shift = (sweep + i) % len(variants)
            order = [*list(variants)[shift:], *list(variants)[:shift]]
            for variant in order:
                times[variant][i] = min(times[variant][i], ctx.timed(lambda v=variant, b=batch: forward(v, b)))
            measured = max(measured, i + 1)
        if box.left() < reserve:
            break
    if measured < len(batches):
        notes.append(f"time box: {measured} of {len(batches)} batches measured (the longest rows first)")
    real = lengths[: plan[measured - 1].stop].tolist() if measured else []
    if not real:
        raise RuntimeError(f"the time box ({box.seconds:.0f} s) ended before one batch was measured")
    padded_tokens = sum(batch["input_ids"].numel() for batch in batches[:measured])
    seconds = {variant: sum(values[:measured]) for variant, values in times.items()}
    tokens = sum(real)
    flops = decoder_flops(select_moe, real)
    metrics.update(
        batches_measured=measured,
        tokens=tokens,
        padding_fraction=1 - tokens / padded_tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds["select_moe"],
        olmoe_tokens_per_s=tokens / seconds["olmoe"],
        select_moe_over_olmoe=seconds["select_moe"] / seconds["olmoe"],
        active_parameters=active_parameters(select_moe),
        total_parameters=sum(p.numel() for p in select_moe.parameters()),
        flops_per_token=flops / tokens,
    )
    if "select_moe_same_kernel" in seconds:
        metrics["select_moe_over_olmoe_same_experts_kernel"] = seconds["select_moe_same_kernel"] / seconds["olmoe"]
    peak = peak_bf16(torch.cuda.get_device_name()) if ctx.cuda else None
    if peak:
        metrics["mfu"] = flops / seconds["select_moe"] / peak
        metrics["olmoe_mfu"] = flops / seconds["olmoe"] / peak
        if "select_moe_same_kernel" in seconds:
            metrics["mfu_same_experts_kernel"] = flops / seconds["select_moe_same_kernel"] / peak
        metrics["peak_bf16_tflops"] = peak / 1e12
    else:
        notes.append("MFU omitted: no peak bf16 figure for this device (PEAK_BF16)")
    if box.left() > 0:
        middle = batches[measured // 2]
        metrics["profile"] = {"batch_shape": list(middle["input_ids"].shape)}
        for variant in variants:
            try:  # a diagnostic: a profiler that cannot start (no CUPTI) costs the profile, not the figures
                metrics["profile"][variant] = profile_forward(
                    lambda v=variant: forward(v, middle), variants[variant][0], ctx
                )
            except Exception as error:  # noqa: BLE001
                metrics["profile"][variant] = {"error": f"{type(error).__name__}: {error}"}
    ctx.drop_source()


def device_time(event, *names: str) -> float:
    """The first of these timing attributes an event has, in microseconds (torch renamed cuda_* to device_*)."""
    return next((value for name in names if (value := getattr(event, name, None)) is not None), 0.0)


PROFILED = (  # module name suffix -> what it is
    (".self_attn", "attention"),
    (".mlp.quality_gate", "quality_gate"),
    (".mlp.gate", "router"),
    (".mlp.experts", "experts"),
    (".mlp", "moe_block"),
)


def profile_forward(run: Callable[[], object], model, ctx: Context) -> dict:
    """One decoder forward under torch.profiler, its time split by module kind (device time on a GPU, CPU time on a
    CPU): attention, router, experts (the dispatch and the expert matmuls), quality gate, and the MoE block's
    remainder (mixing with the trash expert, for Select-MoE), plus the top operators."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    ranges, hooks = {}, []
    for name, module in model.model.named_modules():
        kind = next((kind for suffix, kind in PROFILED if name.endswith(suffix)), None)
        if kind is None:
            continue

        def enter(module, args, kind=kind):
            ranges[id(module)] = record_function(f"mygo::{kind}")
            ranges[id(module)].__enter__()

        def leave(module, args, output):
            ranges.pop(id(module)).__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    try:
        with profile(activities=activities) as prof:
            with record_function("mygo::forward"):
                run()
            ctx.sync()
    finally:
        for hook in hooks:
            hook.remove()
    kind_of_time = "device" if ctx.cuda else "cpu"

    def milliseconds(event) -> float:
        if ctx.cuda:
            return device_time(event, "device_time_total", "cuda_time_total") / 1e3
        return event.cpu_time_total / 1e3

    totals: dict[str, float] = {}
    for event in prof.events():
        if event.name.startswith("mygo::") and getattr(event, "device_type", DeviceType.CPU) == DeviceType.CPU:
            kind = event.name.removeprefix("mygo::")
            totals[kind] = totals.get(kind, 0.0) + milliseconds(event)
    result = {"time": kind_of_time, **{f"{kind}_ms": ms for kind, ms in sorted(totals.items())}}
    if "moe_block" in totals:
        parts = sum(totals.get(kind, 0.0) for kind in ("router", "experts", "quality_gate"))
        result["moe_block_rest_ms"] = totals["moe_block"] - parts
    averages = [event for event in prof.key_averages() if not event.key.startswith("mygo::")]

    def self_time(event) -> float:
        if ctx.cuda:
            return device_time(event, "self_device_time_total", "self_cuda_time_total")
        return event.self_cpu_time_total

    top = sorted(averages, key=self_time, reverse=True)[:8]
    result["top_ops_ms"] = [[event.key, self_time(event) / 1e3] for event in top]
    return result
