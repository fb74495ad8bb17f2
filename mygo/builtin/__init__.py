"""The embedded default's models: the tiny OLMoE base, the tiny Llama target and their tokenizer, built offline."""
