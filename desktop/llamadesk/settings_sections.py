"""The sections of the settings (generation, runtime, app, server, per-model presets).

Each field is declared once with its title, description and limits; the Preferences dialog is
generated from them. ``llamadesk.settings`` re-exports every name here.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .errors import LlamaDeskError
from .limits import MIN_CONTEXT

log = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(text: str) -> str:
    """``text`` with lone surrogates (JSON allows "\\ud800") as U+FFFD, so the file can be saved as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


Text = Annotated[str, AfterValidator(_storable)]
"""A setting's text: lone surrogates become U+FFFD when it is read or set, never an error at saving."""


class SettingsError(LlamaDeskError):
    """A setting value was refused; the message names the field."""


class _Model(BaseModel):
    # inf and NaN pass no range check a user would expect (NaN >= 0 is false, not an error)
    model_config = ConfigDict(extra="ignore", validate_assignment=True, allow_inf_nan=False)


_WORKER_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


def parse_worker_address(text: str) -> str:
    """A llama.cpp RPC worker's address as ``host:port`` (host name or IPv4 address), else ValueError."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not _WORKER_HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{str(text).strip()!r} is not a worker address: write HOST:PORT, e.g. 192.168.1.20:50052"
        )
    return f"{host.lower()}:{int(port)}"


FlashAttention = Literal["auto", "on", "off"]
KVCacheType = Literal["f16", "q8_0", "q4_0"]
ContextOverflow = Literal["drop_oldest", "stop"]


class GenerationSettings(_Model):
    """How a reply is sampled. Applies to the next reply, no reload needed."""

    temperature: float = Field(
        0.7,
        ge=0.0,
        le=2.0,
        title="Temperature",
        description="How adventurous the word choice is. Low (0.1) gives focused, repeatable answers; "
        "0.7 is balanced; 1.0 and above gives varied, creative and sometimes rambling text. "
        "0 always picks the most likely token (greedy).",
        json_schema_extra={"widget": "slider", "step": 0.05},
    )
    top_p: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        title="Top-p",
        description="Nucleus sampling: only tokens within the top p of cumulative probability are "
        "considered. Lower (0.5) keeps answers safe and on topic; 1.0 turns the filter off.",
        json_schema_extra={"step": 0.01},
    )
    top_k: int = Field(
        40,
        ge=0,
        le=1000,
        title="Top-k",
        description="Only the k most likely next tokens are candidates. Smaller (10) is more "
        "predictable, larger (100) more diverse; 0 turns the filter off.",
    )
    min_p: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        title="Min-p",
        description="Drops tokens less likely than this fraction of the most likely one. 0.05 removes "
        "nonsense while keeping variety; higher is stricter; 0 turns it off.",
        json_schema_extra={"step": 0.01},
    )
    repeat_penalty: float = Field(
        1.1,
        ge=0.5,
        le=2.0,
        title="Repeat penalty",
        description="Discourages repeating recent tokens. 1.0 is off; 1.1 stops most loops; "
        "much higher can make the model avoid words it needs; below 1.0 encourages repetition.",
        json_schema_extra={"step": 0.05},
    )
    max_tokens: int = Field(
        1024,
        ge=1,
        le=131072,
        title="Max tokens",
        description="Longest reply in tokens (a token is roughly three quarters of an English word). "
        "The reply stops here even mid-sentence. Room for it is kept free in the context, up to "
        "half of it, so a long history is shortened sooner when this is high.",
        json_schema_extra={"step": 64},
    )
    seed: int = Field(
        -1,
        ge=-1,
        le=2**31 - 1,
        title="Seed",
        description="Random seed for sampling. The same seed, settings and conversation give the same "
        "reply; -1 picks a new random seed each time.",
        json_schema_extra={"special": {"-1": "Random"}},
    )
    stop: list[Text] = Field(
        default_factory=list,
        title="Stop strings",
        description="The reply ends as soon as one of these strings appears (the string itself is not "
        "shown). The model's own end-of-turn markers are always used.",
        json_schema_extra={"widget": "lines", "object_name": "stopStringsEdit"},
    )
    context_overflow: ContextOverflow = Field(
        "drop_oldest",
        title="When the chat outgrows the context",
        description="What happens once a conversation no longer fits in the model's context. Drop the "
        "oldest turns: the system prompt and the newest turns are kept and a stretch of the oldest is "
        "left out (marked in the chat), so replies stay fast. Stop and tell me: nothing is left out; "
        "your message waits until you start a new chat or raise the context length.",
        json_schema_extra={"labels": {"drop_oldest": "Drop the oldest turns", "stop": "Stop and tell me"}},
    )


class RuntimeSettings(_Model):
    """How a model is loaded. Changes take effect on the next load."""

    n_ctx: int = Field(
        0,
        ge=0,
        le=1_048_576,
        title="Context length",
        description="How many tokens the model sees at once: system prompt, history and reply together. "
        "Longer remembers more of the chat but uses more memory. 0 = automatic: the model's trained "
        f"length, capped at what fits in memory and at 8192. At least {MIN_CONTEXT}: llama.cpp makes "
        "no smaller context, and a chat template with a short reply needs about that much.",
        json_schema_extra={"object_name": "contextLengthSpin", "special": {"0": "Auto"}, "step": 1024},
    )
    n_gpu_layers: int = Field(
        -2,
        ge=-2,
        le=1000,
        title="GPU layers",
        description="How many of the model's layers run on the GPU. More is faster while they fit in "
        "video memory. -2 = automatic (planned for this machine), -1 = all, 0 = CPU only. A number above "
        "the model's layer count means all of them.",
        json_schema_extra={"object_name": "gpuLayersSpin", "special": {"-2": "Auto", "-1": "All"}},
    )
    n_threads: int = Field(
        0,
        ge=0,
        le=512,
        title="CPU threads",
        description="Threads used for generation on the CPU. 0 = automatic (physical cores). More than "
        "your physical cores usually makes it slower; 512 is llama.cpp's limit.",
        json_schema_extra={"object_name": "threadsSpin", "special": {"0": "Auto"}},
    )
    n_batch: int = Field(
        512,
        ge=1,
        le=8192,
        title="Batch size",
        description="Prompt tokens processed per step. Larger reads long prompts faster but needs more "
        "memory; 512 suits most machines. Up to 8192: the working memory grows with batch size times "
        "context length, and speed stops improving well before that.",
        json_schema_extra={"object_name": "batchSizeSpin", "step": 64},
    )
    flash_attn: FlashAttention = Field(
        "auto",
        title="Flash attention",
        description="A leaner attention kernel. Auto: used with layers on a GPU that supports it, not on "
        "the CPU alone (slower there, the more so the longer the context); a quantized KV cache needs "
        "it, so Auto turns it on for one. On insists (loading fails where it can't); Off never uses it.",
        json_schema_extra={"labels": {"auto": "Auto", "on": "On", "off": "Off"}},
    )
    kv_cache_type: KVCacheType = Field(
        "f16",
        title="KV cache type",
        description="How the model's memory of the context (the KV cache) is stored. f16 is exact; "
        "q8_0 takes about half the memory with hardly any change in replies, q4_0 about a quarter "
        "with some: a longer context fits in the same memory. Quantized types need flash attention.",
        json_schema_extra={
            "labels": {"f16": "f16 (exact)", "q8_0": "q8_0 (half the memory)", "q4_0": "q4_0 (a quarter)"}
        },
    )
    use_mmap: bool = Field(
        True,
        title="Memory-map the model",
        description="Reads the model file on demand instead of copying it into memory first: faster "
        "loads, and memory is shared with the system file cache.",
    )
    use_mlock: bool = Field(
        False,
        title="Lock the model in memory",
        description="Keeps the model in RAM so the system never swaps it out. Needs enough free memory "
        "(and sometimes permission); otherwise loading fails.",
    )
    workers: list[Text] = Field(
        default_factory=list,
        max_length=16,
        title="Workers",
        description="Other machines running `llamadesk worker`, one HOST:PORT per line: the model's layers "
        "are spread over them and this machine. Only on a trusted network: the connection has no "
        "password or encryption. Empty = this machine alone.",
        json_schema_extra={
            "widget": "lines",
            "object_name": "workersEdit",
            "placeholder": "One per line, e.g. 192.168.1.20:50052",
        },
    )

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _flash_attn_from_switch(cls, value: Any) -> Any:
        # Settings written before Auto existed hold a switch: on stays on, off (the old default) is Auto.
        if isinstance(value, bool):
            return "on" if value else "auto"
        return value

    @field_validator("workers")
    @classmethod
    def _worker_addresses(cls, value: list[str]) -> list[str]:
        addresses: list[str] = []
        for item in value:
            try:
                address = parse_worker_address(item)
            except ValueError as exc:
                raise PydanticCustomError("worker_address", "{message}", {"message": str(exc)}) from exc
            if address not in addresses:
                addresses.append(address)
        return addresses

    @field_validator("n_ctx")
    @classmethod
    def _long_enough(cls, value: int) -> int:
        if 0 < value < MIN_CONTEXT:
            raise PydanticCustomError(
                "context_too_short",
                "Context length must be Auto (0) or at least {minimum} tokens: llama.cpp makes no smaller "
                "context, and a chat template with a short reply needs about that much.",
                {"minimum": MIN_CONTEXT},
            )
        return value


Theme = Literal["system", "light", "dark"]


class AppSettings(_Model):
    """How the app looks and where it keeps things."""

    theme: Theme = Field(
        "system",
        title="Theme",
        description="Light, dark, or follow the system.",
        json_schema_extra={
            "tab": "appearance",
            "labels": {"system": "Follow system", "light": "Light", "dark": "Dark"},
        },
    )
    font_size: int = Field(
        11,
        ge=6,
        le=32,
        title="Font size",
        description="Size of the chat text in points.",
        json_schema_extra={"tab": "appearance", "suffix": " pt"},
    )
    code_font: Text = Field(
        "monospace",
        title="Code font",
        description="Font family used for code blocks and inline code.",
        json_schema_extra={"tab": "appearance", "required": True},
    )
    default_system_prompt: Text = Field(
        "You are a helpful assistant.",
        title="Default system prompt",
        description="Instructions every new conversation starts with; each conversation can change its own.",
        json_schema_extra={"tab": "generation", "widget": "multiline"},
    )
    models_dir: Text = Field(
        "",
        title="Models folder",
        description="Where downloaded models are stored. Empty = the default folder in the data directory.",
        json_schema_extra={"tab": "model", "widget": "folder"},
    )
    documents_embedding_model: Text = Field(
        "",
        max_length=4096,
        title="Documents embedding model",
        description="An embedding model from the library (name or file) that lets chats with documents "
        "search by meaning as well as by words. Empty = words only. Files already indexed get vectors "
        "when their collection is refreshed.",
        json_schema_extra={"tab": "model", "object_name": "documentsEmbeddingModelEdit"},
    )
    max_parallel_downloads: int = Field(
        1,
        ge=1,
        le=4,
        title="Parallel downloads",
        description="How many downloads run at the same time.",
        json_schema_extra={"tab": "hub"},
    )
    state_disk_budget_mb: int = Field(
        2048,
        ge=0,
        le=1_048_576,
        title="Saved conversation states",
        description="Disk space for the model's memory of recent conversations, so reopening a long "
        "chat (after switching, or restarting LlamaDesk) reads only the new message. The least "
        "recently used go first when it is full; 0 keeps none on disk.",
        json_schema_extra={"tab": "storage", "suffix": " MB", "step": 512},
    )
    last_model: Text = Field(
        "",
        title="Last model",
        description="The model loaded at the last session.",
        json_schema_extra={"hidden": True},
    )


class ServerSettings(_Model):
    """The local API server: an OpenAI-compatible HTTP API over the model loaded in the window.

    Its API key is a secret (``llamadesk.secrets.SecretStore``, name ``API_KEY_SECRET``), never
    kept in settings.json.
    """

    enabled: bool = Field(
        False,
        title="Run the local API server",
        description="Serve the model loaded in the window to other programs (editors, scripts, agent "
        "tools) over an OpenAI-compatible HTTP API while LlamaDesk is open.",
        json_schema_extra={"tab": "server", "object_name": "serverEnabledCheck"},
    )
    host: Text = Field(
        "127.0.0.1",
        min_length=1,
        max_length=255,
        title="Address",
        description="The network address to listen on. 127.0.0.1 lets only programs on this computer "
        "in; any other address (0.0.0.0 for every network) also lets other machines in and requires "
        "an API key.",
        json_schema_extra={"tab": "server", "object_name": "serverHostEdit", "required": True},
    )
    port: int = Field(
        8642,
        ge=1,
        le=65535,
        title="Port",
        description="The TCP port of the API: clients use http://ADDRESS:PORT/v1 as their base URL.",
        json_schema_extra={"tab": "server", "object_name": "serverPortSpin"},
    )
    allowed_origins: list[Text] = Field(
        default_factory=list,
        title="Allowed web origins",
        description="Web pages (one origin a line, such as http://localhost:3000) allowed to call the "
        "API from a browser. Empty = none: requests from web pages are refused.",
        json_schema_extra={"tab": "server", "widget": "lines", "object_name": "serverOriginsEdit"},
    )
    load_on_request: bool = Field(
        False,
        title="Load models on request",
        description="When a request names another model from your library, load it (replacing the "
        "model in the window). Off: such a request is refused, naming the loaded model.",
        json_schema_extra={"tab": "server", "object_name": "serverLoadOnRequestCheck"},
    )
    store_requests: bool = Field(
        False,
        title="Keep API chats in the history",
        description="Save each chat request and its reply as a conversation in the sidebar. Off: "
        "API requests leave no trace in your history.",
        json_schema_extra={"tab": "server", "object_name": "serverStoreRequestsCheck"},
    )
    embedding_model: Text = Field(
        "",
        max_length=4096,
        title="Embedding model",
        description="The library model that answers /v1/embeddings when a request names no other. "
        "Empty = the loaded model.",
        json_schema_extra={"tab": "server", "object_name": "serverEmbeddingModelEdit"},
    )
    max_queued: int = Field(
        16,
        ge=1,
        le=1024,
        title="Queued requests",
        description="How many API requests may wait for the model at once; more are answered "
        "“429 Too Many Requests” with a Retry-After time.",
        json_schema_extra={"tab": "server", "object_name": "serverMaxQueuedSpin"},
    )


API_KEY_SECRET = "api_key"
"""The name of the local API server's key in ``llamadesk.secrets.SecretStore``."""


class RemoteServer(_Model):
    """An OpenAI-compatible server whose models the picker lists (Preferences → Remote servers).

    Its API key is a secret (``llamadesk.remote.registry.secret_name``), never kept in settings.json.
    """

    name: Text = Field(min_length=1, max_length=64, title="Name", description="Shown in the model picker.")
    url: Text = Field(
        min_length=1,
        max_length=2048,
        title="Address",
        description="The server's base URL, such as http://192.168.1.20:8080 (/v1 is added when missing).",
    )


class ModelPreset(_Model):
    """Generation and runtime settings saved for one model, applied when it loads."""

    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    thinking: Literal["", "on", "off", "low", "medium", "high"] = Field(
        "",
        title="Thinking",
        description="For reasoning models whose template can switch it: think before answering (on, "
        "off, or a reasoning effort). Empty = the template's own default.",
    )
