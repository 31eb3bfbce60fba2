"""Numbers that the settings, the CLI and the engine agree on; importing this costs nothing."""

from __future__ import annotations

# The shortest context (in tokens) that is not "automatic". llama.cpp never makes a smaller one: it
# rounds every context up to a multiple of 256, while llama-cpp-python sizes its own token buffer to
# the number asked for, so a smaller request overruns that buffer (``--ctx 16`` crashed the reply).
# 256 also holds a chat template's framing with a system prompt and question (about 30 tokens for
# ChatML) plus a short reply.
MIN_CONTEXT = 256
