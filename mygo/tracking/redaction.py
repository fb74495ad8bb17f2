"""Secrets never reach the tracking store: passwords in URLs and values of secret-looking keys are masked.

Params, tags and `config/resolved.yaml` go through here. Config keys named like a secret (`hf_token`,
`password`, ...) are masked whole; any URL keeps its host and user but not its password
(`postgresql://mygo:***@db/optuna`).
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

MASK = "***"
# A key that names a secret (`token`, `hf_token`, `db_password`), not one that merely mentions one
# (`max_train_tokens`): configs are logged to be read back, by evaluate and reproduce.
SECRET_KEY = re.compile(r"(^|_)(token|password|passwd|secret|api_key|apikey|credentials?)$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")


def redact_text(text: str) -> str:
    """Every `scheme://user:password@` in the text, with the password masked."""
    return URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact_value(key: str, value: Any) -> Any:
    if value is not None and SECRET_KEY.search(key.rsplit(".", 1)[-1]):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


def _redact_node(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return {k: _redact_node(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_node(v, key) for v in node]
    return redact_value(key, node)


def redact_config(cfg: DictConfig) -> DictConfig:
    """A copy of the config fit to be logged."""
    return OmegaConf.create(_redact_node(OmegaConf.to_container(cfg, resolve=True), ""))
