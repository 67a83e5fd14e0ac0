"""Saving and loading gates: our format (``cares_gate.json`` + ``head.safetensors``) and the
research code's plain PyTorch state dict (``head.0.*``, ``head.1.*``, ``head.3.*``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ...core.errors import CheckpointError
from .config import CONFIG_NAME, HEAD_NAME, GateConfig
from .head import GateHead

_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_PREFERRED_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.pt", "gate.pt", "head.pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Options that describe how a research checkpoint was trained (it has no config file to say so).
_RESEARCH_ONLY = ("feature_layers", "pooling", "preprocessing", "bins")


def save_gate(path: str | os.PathLike, config: GateConfig, head: GateHead) -> Path:
    """Write a gate in our format: ``cares_gate.json`` (the config) + ``head.safetensors``."""
    from safetensors.torch import save_file

    if (head.in_dim, head.hidden, head.n_classes) != (config.in_dim, config.hidden_dim, config.n_classes):
        raise ValueError(
            f"head sizes {(head.in_dim, head.hidden, head.n_classes)} do not match the config's "
            f"{(config.in_dim, config.hidden_dim, config.n_classes)} (in_dim, hidden_dim, n_classes)"
        )
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(folder / HEAD_NAME), metadata={"format": "pt", "cares_gate_format": str(config.format_version)})
    (folder / CONFIG_NAME).write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return folder


def read_gate(path: str | os.PathLike) -> tuple[GateConfig, GateHead]:
    """Read a local gate folder in our format; returns its config and head (on CPU)."""
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        raw = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not valid JSON: {exc}") from exc
    try:
        config = GateConfig.model_validate(raw)
    except ValueError as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not a valid gate config: {exc}") from exc
    if not (folder / HEAD_NAME).is_file():
        raise CheckpointError(f"{folder} has {CONFIG_NAME} but no {HEAD_NAME}")
    head = GateHead.from_state_dict(load_file(str(folder / HEAD_NAME)))
    if (head.in_dim, head.hidden, head.n_classes) != (config.in_dim, config.hidden_dim, config.n_classes):
        raise CheckpointError(
            f"{HEAD_NAME} has sizes {(head.in_dim, head.hidden, head.n_classes)} but {CONFIG_NAME} says "
            f"{(config.in_dim, config.hidden_dim, config.n_classes)} (in_dim, hidden_dim, n_classes)"
        )
    return config, head


def read_research_head(path: str | os.PathLike) -> GateHead:
    """The head of a research-code state dict file (``backbone.*`` keys are ignored), sized from its weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for bad pickles
            raise CheckpointError(f"cannot read {path} as a PyTorch state dict: {exc}") from exc
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    head_state = {k[len("head."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("head.")}
    if not head_state:  # a bare head saved on its own
        head_state = {k: v for k, v in state.items() if isinstance(k, str) and k.split(".")[0] in ("0", "1", "3")}
    if not head_state:
        raise CheckpointError(f"{path} has no head weights (keys head.0.*, head.1.*, head.3.*); keys: {sorted(state)[:8]}")
    return GateHead.from_state_dict(head_state)


def _weight_file_in(folder: Path) -> Path | None:
    for name in _PREFERRED_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if len(found) > 1:
        raise CheckpointError(f"{folder} holds several weight files {[p.name for p in found]}; pass the file itself")
    return found[0] if found else None


def _resolve(source: str | os.PathLike, revision: str | None) -> tuple[str, Path]:
    """``("ours", folder)`` or ``("research", weight_file)`` for a local path or a hub id."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.name == CONFIG_NAME:
            return "ours", path.parent
        if path.suffix in _WEIGHT_SUFFIXES:
            return "research", path
        raise CheckpointError(f"{path} is neither a gate folder, {CONFIG_NAME}, nor a {'/'.join(_WEIGHT_SUFFIXES)} file")
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return "ours", path
        weights = _weight_file_in(path)
        if weights is None:
            raise CheckpointError(f"{path} has neither {CONFIG_NAME} nor a research state dict ({', '.join(_PREFERRED_WEIGHTS)})")
        return "research", weights
    text = str(source)
    if not _HUB_ID.match(text):
        raise CheckpointError(f"no gate at {text!r}: not a local file or folder, and not a hub id like 'org/name'")
    return _resolve_hub(text, revision)


def _resolve_hub(repo_id: str, revision: str | None) -> tuple[str, Path]:
    """Download a gate from the Hugging Face hub (our format first, else a research state dict)."""
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import EntryNotFoundError

    from .hub import local_files_only

    offline = local_files_only(repo_id, CONFIG_NAME, revision=revision, what="gate")
    try:
        config_file = hf_hub_download(repo_id, CONFIG_NAME, revision=revision, local_files_only=offline)
        hf_hub_download(repo_id, HEAD_NAME, revision=revision, local_files_only=offline)
        return "ours", Path(config_file).parent
    except EntryNotFoundError:
        pass
    except Exception as exc:
        raise CheckpointError(f"could not download gate {repo_id!r} from the hub: {exc}") from exc
    try:
        files = list_repo_files(repo_id, revision=revision)
        candidates = [f for f in _PREFERRED_WEIGHTS if f in files] or sorted(f for f in files if f.endswith(_WEIGHT_SUFFIXES))
        if not candidates:
            raise CheckpointError(f"hub repo {repo_id!r} has neither {CONFIG_NAME} nor a weight file; files: {files[:10]}")
        return "research", Path(hf_hub_download(repo_id, candidates[0], revision=revision))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"could not download gate {repo_id!r} from the hub: {exc}") from exc


def load_gate(source: str | os.PathLike, *, device: Any = None, dtype: Any = None, hub: bool = False,
              **options: Any):
    """Load a :class:`CaresGateRouter` from a local folder/file or a hub id.

    ``source``: a folder (or hub repo) in our format (``cares_gate.json`` + ``head.safetensors``),
    or a research-code state dict (a ``.pt``/``.bin``/``.safetensors`` file, or a folder or hub
    repo holding one), which needs ``base_model=``.

    Gate options: ``base_model`` (override the config's base model, e.g. a local copy),
    ``base_model_revision``, ``revision`` (of the gate's hub repo), ``temperature``, ``cache_size``
    (vision cache entries, default 256), ``batch_size`` (forward-pass chunk, default 16),
    ``max_batch_size``/``max_wait_ms`` (async micro-batching), ``truncate`` (default True),
    ``model_kwargs``/``processor_kwargs`` (passed to transformers). ``hub=True``: ``source`` is a
    hub id, even where a local folder of that name exists. For research checkpoints only:
    ``feature_layers`` (default: the middle layer), ``pooling`` (default ``"mean"``),
    ``preprocessing`` (default ``"upstream"``, how they were trained) and ``bins``. Every other
    option goes to the router (``policy``, ``target``, ``free_detail``, ``max_pixels``, ``fetch``).
    """
    from .backbone import ProxyBackbone
    from .router import CaresGateRouter

    base_model = options.pop("base_model", None)
    base_revision = options.pop("base_model_revision", None)
    revision = options.pop("revision", None)
    temperature = options.pop("temperature", None)
    backbone_opts = {k: options.pop(k) for k in ("cache_size", "batch_size", "truncate", "model_kwargs", "processor_kwargs") if k in options}
    router_batching = {k: options.pop(k) for k in ("max_batch_size", "max_wait_ms") if k in options}
    research_opts = {k: options.pop(k) for k in _RESEARCH_ONLY if k in options}

    kind, where = _resolve_hub(str(source), revision) if hub else _resolve(source, revision)
    if kind == "ours":
        if research_opts:
            raise TypeError(
                f"options {sorted(research_opts)} are fixed by the saved gate's {CONFIG_NAME} and cannot be "
                "overridden (they only apply to research state dicts, which have no config)"
            )
        config, head = read_gate(where)
        updates: dict[str, Any] = {}
        if base_model is not None:
            updates["base_model"] = str(base_model)
        if base_revision is not None:
            updates["base_model_revision"] = base_revision
        if temperature is not None:
            updates["temperature"] = temperature
        if updates:
            config = GateConfig.model_validate({**config.model_dump(), **updates})
        backbone = ProxyBackbone.from_pretrained(
            config.base_model, feature_layers=config.feature_layers, pooling=config.pooling,
            preprocessing=config.preprocessing, device=device, dtype=dtype,
            revision=config.base_model_revision, **backbone_opts,
        )
    else:
        if base_model is None:
            raise CheckpointError(
                f"{where} is a research-code state dict with no config: pass base_model=... "
                "(e.g. 'HuggingFaceTB/SmolVLM-256M-Instruct' or a local copy)"
            )
        head = read_research_head(where)
        backbone = ProxyBackbone.from_pretrained(
            str(base_model), feature_layers=research_opts.get("feature_layers"),
            pooling=research_opts.get("pooling", "mean"),
            preprocessing=research_opts.get("preprocessing", "upstream"),
            device=device, dtype=dtype, revision=base_revision, **backbone_opts,
        )
        fields: dict[str, Any] = dict(
            base_model=str(base_model), base_model_revision=base_revision,
            feature_layers=backbone.feature_layers, pooling=backbone.pooling, preprocessing=backbone.preprocessing,
            in_dim=head.in_dim, hidden_dim=head.hidden, n_classes=head.n_classes,
            num_base_layers=backbone.num_base_layers, labels=f"imported from research state dict {Path(where).name}",
        )
        if "bins" in research_opts:
            fields["bins"] = tuple(research_opts["bins"])
        if temperature is not None:
            fields["temperature"] = temperature
        try:
            config = GateConfig(**fields)
        except ValueError as exc:
            raise CheckpointError(f"research checkpoint {where} does not fit the given options: {exc}") from exc
    if backbone.hidden_size != config.in_dim:
        raise CheckpointError(
            f"the head expects {config.in_dim}-d features but base model {config.base_model!r} has hidden size "
            f"{backbone.hidden_size}: wrong base model?"
        )
    if config.num_base_layers is not None and config.num_base_layers != backbone.num_base_layers:
        raise CheckpointError(
            f"the gate was trained on a base model with {config.num_base_layers} text layers but "
            f"{config.base_model!r} has {backbone.num_base_layers}: wrong base model?"
        )
    return CaresGateRouter(backbone, head, config, **router_batching, **options)
