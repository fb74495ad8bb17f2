"""The report: the environment (versions, device, its bf16 peak), the table of headline figures against their
targets as printed, and the JSON written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib import metadata
from pathlib import Path

from gpu_bench.workload import peak_bf16


def environment(device: str, args: argparse.Namespace) -> dict:
    import torch

    def version(*names: str) -> str | None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "small": args.small,
        "parts": args.parts,
        "time_boxes_s": args.time_box,
        "versions": {
            name: version(*aliases)
            for name, *aliases in (
                ("torch", "torch"),
                ("transformers", "transformers"),
                ("peft", "peft"),
                ("accelerate", "accelerate"),
                ("numpy", "numpy"),
                ("scikit-learn", "scikit-learn"),
                ("pandas", "pandas"),
                ("cuml", "cuml", "cuml-cu12", "cuml-cu11"),
            )
        },
    }
    if device == "cuda":
        info["peak_bf16_tflops"] = (peak_bf16(info["device_name"]) or 0) / 1e12 or None
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


# Table rows: (part, metric, label, target as (comparison, bound) or None).
TABLE = (
    ("forward", "tokens_per_s", "Select-MoE forward tokens/s", None),
    ("forward", "olmoe_tokens_per_s", "OLMoE forward tokens/s", None),
    ("forward", "mfu", "forward MFU (Select-MoE)", (">=", 0.40)),
    ("forward", "select_moe_over_olmoe", "Select-MoE / OLMoE time", ("<=", 1.10)),
    ("forward", "select_moe_over_olmoe_same_experts_kernel", "  same, OLMoE's experts kernel", None),
    ("forward", "peak_memory_gb", "peak memory GB (both models)", None),
    ("scoring", "samples_per_s", "samples/s", None),
    ("scoring", "tokens_per_s", "tokens/s", None),
    ("scoring", "projected_270k_minutes", "270k LESS pool, minutes", ("<=", 20.0)),
    ("scoring", "peak_memory_gb", "peak memory GB", None),
    ("kmeans", "gpu_seconds", "elbow + fit s, best accelerated", ("<=", 20.0)),
    ("kmeans", "seconds_sklearn", "elbow + fit s, CPU default", None),
    ("kmeans", "inertia_ratio_torch", "inertia torch / CPU default", None),
    ("kmeans", "inertia_ratio_cuml", "inertia cuML / CPU default", None),
    ("warmup", "optimizer_steps_per_s", "optimizer steps/s", None),
    ("warmup", "tokens_per_s", "tokens/s", None),
    ("warmup", "peak_memory_gb", "peak memory GB", None),
    ("finetune", "optimizer_steps_per_s", "optimizer steps/s", None),
    ("finetune", "tokens_per_s", "tokens/s", None),
    ("finetune", "peak_memory_gb", "peak memory GB", None),
)


def table_rows(report: dict, targets_apply: bool) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for part, record in report["parts"].items():
        if record["status"] != "ok":
            rows.append((part, "status", f"{record['status']}: {record.get('error', '')}"[:70], "", ""))
        for name, metric, label, target in TABLE:
            value = record["metrics"].get(metric)
            if name != part or value is None:
                continue
            shown = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
            met = "-"
            if target and targets_apply:
                met = "yes" if (value >= target[1] if target[0] == ">=" else value <= target[1]) else "no"
            rows.append((part, label, shown, f"{target[0]} {target[1]:g}" if target else "", met))
    return rows


def print_table(rows: list[tuple[str, ...]], targets_apply: bool) -> None:
    header = ("part", "metric", "value", "target", "met?")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(line.format(*header))
    print(line.format(*("-" * width for width in widths)))
    for row in rows:
        print(line.format(*row))
    if not targets_apply:
        print("(targets are for one H100/H200-class GPU at full size: not judged on this run)")


def write_report(path: Path, report: dict) -> None:
    from mygo.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:  # a run killed mid-write leaves the previous report, never half of one
        temporary.write_text(json.dumps(report, indent=1, default=str))
