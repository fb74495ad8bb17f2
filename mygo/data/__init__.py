"""Instruction data: the pool, chat encoding, and the offline text behind the embedded default."""
