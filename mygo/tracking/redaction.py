"""Secrets never reach the tracking store: passwords in URLs and values of secret-looking keys are masked.

Params, tags, `config/resolved.yaml`, error texts (`mygo.error`, the Optuna trial's `error`) and the
tracking URIs mygo prints go through here. Config keys named like a secret (`hf_token`, `password`,
`secret_key`, `aws_secret_access_key`, ...) are masked whole, and so are their values inside text
(`target.hf_token=...` in an overrides string, `?password=...` in a URL). A URL keeps its host and
user but not its password (`postgresql://mygo:***@db/optuna`, the password may hold `/` or `@`);
a URL whose user part is a bare token (`https://TOKEN@host`) loses it whole.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

MASK = "***"
# Words that make a key a secret wherever they stand (`db_password`, `client_secret`, `aws_secret_access_key`).
SECRET_WORDS = {"password", "passwd", "pwd", "secret", "secrets", "credential", "credentials", "apikey"}
# Endings that do (`hf_token`, `token_value`, `api_key`), unlike a key that merely counts tokens
# (`max_train_tokens`, `pad_token_id`): configs are logged to be read back, by evaluate and reproduce.
SECRET_ENDINGS = (("token",), ("token", "value"), ("api", "key"), ("access", "key"), ("private", "key"))
# `scheme://user:password@`: the password runs to the last `@` of the word, so one holding `/` or `@` is masked whole.
URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^\s]*)@")
URL_TOKEN = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<token>[^:/@\s]+)@")  # no colon: a bare token
# `key=value` in text: an override (`target.hf_token=abc`, quoted or not, inside a quoted overrides string too)
# or a URL query (`?password=abc`).
ASSIGNED_KEY = re.compile(r"(?P<key>[A-Za-z0-9_.+~-]+)=")
ASSIGNED_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s&#'\"]+")


def is_secret_key(key: str) -> bool:
    """Whether the key (its last dotted part) names a secret."""
    words = tuple(word for word in re.split(r"[_\-]", key.rsplit(".", 1)[-1].lower().lstrip("+~")) if word)
    if SECRET_WORDS.intersection(words):
        return True
    return any(words[-len(ending) :] == ending for ending in SECRET_ENDINGS)


def _mask_assignments(text: str) -> str:
    """Scanned key by key (not value by value), so that `a='b.hf_token=c'` reaches the inner assignment."""
    parts, position = [], 0
    for match in ASSIGNED_KEY.finditer(text):
        if match.start() < position or not is_secret_key(match["key"]):
            continue
        value = ASSIGNED_VALUE.match(text, match.end())
        parts += [text[position : match.end()], MASK]
        position = value.end() if value else match.end()
    return "".join(parts) + text[position:]


def redact_text(text: str, bare_user: bool = True) -> str:
    """The text with every URL password, bare URL user (`bare_user`: it may be a token) and `secret_key=value`
    masked."""
    text = URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if bare_user:
        text = URL_TOKEN.sub(lambda m: m[0] if m["token"] == MASK else f"{m['scheme']}{MASK}@", text)
    return _mask_assignments(text)


def redact_value(key: str, value: Any) -> Any:
    if value is not None and is_secret_key(key):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


def secret_params(params: dict[str, str]) -> list[str]:
    """The params that carry a password or secret: a URL's bare user (`postgresql://mygo@db`, the way to name
    a database user whose password is in PGPASSWORD) is masked when logged but does not count here."""
    return sorted(
        key for key, value in params.items() if value and (is_secret_key(key) or redact_text(value, False) != value)
    )


def _redact_node(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return {k: _redact_node(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_node(v, key) for v in node]
    return redact_value(key, node)


def redact_config(cfg: DictConfig) -> DictConfig:
    """A copy of the config fit to be logged."""
    return OmegaConf.create(_redact_node(OmegaConf.to_container(cfg, resolve=True), ""))
