"""The demo pool in the LESS format: conversation templates, injected noise, and the cached build."""
