"""Local MusicGPT-compatible denoise provider: a DeepFilterNet 3 engine and the HTTP server around it.

The engine's dependencies (the project's ``local`` extra) are imported lazily, so ``import local.provider`` is cheap;
use ``local.provider.server`` (the server; it re-exports ``ProviderConfig`` and ``Behaviour``),
``local.provider.config`` (its options), ``local.provider.engine``, ``local.provider.zygote`` (the process the server's
jobs are forked from) and ``local.provider.metrics`` directly.
"""
