"""Router weights: the only parameters the warmup changes (quality gates and MoE router gates).

They are saved alone, as safetensors, so a warmup run stores kilobytes to megabytes instead of a
copy of the model, and any stage rebuilds the warmed-up model from its convert run plus these.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mygo.atomic import atomic_path

ROUTER_WEIGHTS_FILE = "weights.safetensors"
QUALITY_GATE_PATTERN = re.compile(r"(^|\.)layers\.\d+\.mlp\.quality_gate\.weight$")
ROUTER_GATE_PATTERN = re.compile(r"(^|\.)layers\.\d+\.mlp\.gate\.weight$")


def is_router_parameter(name: str, include_router_gates: bool = True) -> bool:
    if QUALITY_GATE_PATTERN.search(name):
        return True
    return include_router_gates and bool(ROUTER_GATE_PATTERN.search(name))


def router_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The quality-gate and router-gate weights of a (merged, non-peft) Select-MoE model."""
    state = {name: tensor for name, tensor in model.state_dict().items() if is_router_parameter(name)}
    if not any(QUALITY_GATE_PATTERN.search(name) for name in state):
        raise ValueError(f"{type(model).__name__} has no quality gates: is it a Select-MoE model?")
    return state


def save_router_weights(model: torch.nn.Module, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in router_state_dict(model).items()}
    with atomic_path(path) as temporary:  # never a half-written file under the final name
        save_file(tensors, str(temporary), metadata={"format": "pt", "content": "mygo router weights"})
    return path


LEGACY_SUFFIXES = (".pt", ".pth", ".bin")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a legacy torch file through `weights_only` unpickling only.

    A legacy file that holds anything but tensors and plain containers (a pickle payload that would
    run code) is refused, not executed.
    """
    path = Path(path)
    if path.suffix not in LEGACY_SUFFIXES:
        return load_file(str(path))
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (and others) for what weights_only forbids
        raise ValueError(f"{path}: refused: not a plain tensor file ({type(error).__name__}: {error})") from error
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError(f"{path}: refused: expected a mapping of names to tensors")
    return tensors


def load_router_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Copy saved router weights into `model`, after checking every name and shape matches."""
    saved = read_tensors(path)
    expected = router_state_dict(model)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    mismatched = [
        f"{name}: saved {tuple(saved[name].shape)}, model {tuple(expected[name].shape)}"
        for name in sorted(set(saved) & set(expected))
        if saved[name].shape != expected[name].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched[:5]))
        if missing:
            problems.append(f"missing from the file: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(f"not in the model: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise ValueError(f"router weights {path} do not fit the model: " + " | ".join(problems))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in saved:
                tensor.copy_(saved[name].to(tensor.dtype))
