"""Conversion cost as a ratio to building the source model: `python benchmarks/conversion.py`."""

import torch
from timing import best_seconds
from transformers import OlmoeConfig, OlmoeForCausalLM

from mygo.models import convert_olmoe_to_select_moe


def main() -> None:
    config = OlmoeConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_experts=16,
        num_experts_per_tok=4,
    )
    torch.manual_seed(0)
    source = OlmoeForCausalLM(config)
    build = best_seconds(lambda: OlmoeForCausalLM(config))
    convert = best_seconds(lambda: convert_olmoe_to_select_moe(source))
    params = sum(p.numel() for p in source.parameters()) / 1e6
    print(f"{params:.1f}M params: build source {build:.3f}s, convert {convert:.3f}s, ratio {convert / build:.2f}")


if __name__ == "__main__":
    main()
