"""Training with the HF Trainer: the plumbing warmup and finetune share, and the router trainer of warmup."""
