"""Runs one part: the part functions by name, and `run_part`, which runs one in its time box under the hard limit,
resets and reads its peak memory, and records its status (ok, failed with the traceback, timeout), seconds, metrics
and notes; a part that fails is recorded and the others go on.
"""

from __future__ import annotations

import sys
import time
import traceback

from gpu_bench.forward import part_forward
from gpu_bench.harness import Context, PeakMemory, TimeBox, TimeBoxExceeded, free_memory, hard_limit
from gpu_bench.kmeans import part_kmeans
from gpu_bench.scoring import part_scoring
from gpu_bench.training import part_finetune, part_warmup

PART_FUNCTIONS = {
    "forward": part_forward,
    "scoring": part_scoring,
    "kmeans": part_kmeans,
    "warmup": part_warmup,
    "finetune": part_finetune,
}


def run_part(name: str, ctx: Context, box_s: float, memory: PeakMemory) -> dict:
    record: dict = {"status": "running", "time_box_s": round(box_s, 1), "metrics": {}, "notes": []}
    print(f"[gpu.py] {name}: start (time box {box_s:g} s)", file=sys.stderr, flush=True)
    free_memory()
    memory.reset()
    started = time.perf_counter()
    try:
        # The hard limit only catches a part that overruns its box by far: each part stops measuring by itself.
        with hard_limit(box_s * 1.25 + 30):
            if ctx.fail_part == name:
                raise RuntimeError("failure injected by --fail-part")
            PART_FUNCTIONS[name](ctx, TimeBox(box_s), record["metrics"], record["notes"])
        record["status"] = "ok"
    except TimeBoxExceeded as error:
        record.update(status="timeout", error=str(error))
    except Exception as error:  # noqa: BLE001 - a failing part is recorded and the others go on
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        record["traceback"] = traceback.format_exc(limit=12)
        print(record["traceback"], file=sys.stderr, flush=True)
    finally:
        record["seconds"] = time.perf_counter() - started
        record["metrics"]["peak_memory_gb"] = memory.peak_gb()
        record["metrics"]["peak_memory_kind"] = memory.kind if memory.reset_ok else f"{memory.kind} (process)"
    if record["status"] != "ok":
        ctx.free()  # whatever the part left half-built
    print(f"[gpu.py] {name}: {record['status']} in {record['seconds']:.1f} s", file=sys.stderr, flush=True)
    return record
