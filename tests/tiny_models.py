"""Tiny random Idefics3 (SmolVLM architecture) models built offline, for tests and benchmarks.

Nothing here touches the network: the tokenizer is a small byte-level BPE trained in memory with
the ``tokenizers`` library, the model is built from a config with random weights, and everything is
saved to a folder that ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained`` read like a hub checkpoint.

Use it from tests (the training tests import it too)::

    from tiny_models import tiny_idefics3

    folder = tiny_idefics3()          # built once per process, cached in a temp folder
    folder = tiny_idefics3(tmp_path)  # or built into a folder of your choosing

``smolvlm_256m_config()`` gives SmolVLM-256M-Instruct's exact architecture (random weights) for
the benchmark; ``build_idefics3(folder, config=...)`` builds either.

The tiny model: vision tower 2 layers (hidden 32, patch 8, 64-px tiles), pixel-shuffle scale 2
(16 image tokens per tile), text model 4 layers (hidden 32, 4 heads / 2 KV heads). The processor
mirrors SmolVLM's: tiles of ``max_image_size`` (64 px), long edge ``4 * 64`` px with splitting on,
so the "upstream" pipeline makes up to 17 tiles, like the real one at 512/2048 px.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

# SmolVLM's chat template (one user turn of [image, text] renders as
# "<|im_start|>User:<image>question<end_of_utterance>\n").
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

SPECIAL_TOKENS = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>", "<fake_token_around_image>",
     "<image>", "<global-img>"]
    + [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
)

_CORPUS = [
    "What is the total revenue in the table? Read the small print at the bottom of the page.",
    "User: Assistant: question answer chart figure document invoice receipt date amount",
    "How many items are listed? Which year had the highest value? What does the title say?",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-",
]


def build_tokenizer(vocab_size: int = 400):
    """A small byte-level BPE tokenizer holding every special token Idefics3's processor needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
    )


def tiny_idefics3_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> Any:
    """A tiny Idefics3Config: 64-px tiles, 16 image tokens per tile, 4 text layers."""
    from transformers import Idefics3Config

    return Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=8, num_channels=3),
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                         max_position_embeddings=4096, pad_token_id=pad_token_id, tie_word_embeddings=False),
        scale_factor=2,
        image_token_id=image_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )


def smolvlm_256m_config(vocab_size: int = 49280, image_token_id: int = 49190, pad_token_id: int = 2) -> Any:
    """SmolVLM-256M-Instruct's exact architecture (SigLIP 768x12, SmolLM2 576x30, scale 4)."""
    from transformers import Idefics3Config

    return Idefics3Config(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=512, patch_size=16, num_channels=3),
        text_config=dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=vocab_size,
                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                         pad_token_id=pad_token_id, tie_word_embeddings=True, head_dim=64),
        scale_factor=4,
        image_token_id=image_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def build_idefics3(folder: str | os.PathLike, *, full_size: bool = False, seed: int = 0) -> Path:
    """Build a random Idefics3 model + processor and save both to ``folder``; returns the folder.

    ``full_size=False``: the tiny test model. ``full_size=True``: SmolVLM-256M-Instruct's exact
    architecture and processor settings (512-px tiles, long edge 2048), with a tiny tokenizer whose
    vocabulary is padded so the image token id matches the real model's 49190.
    """
    import torch
    from transformers import AutoModelForImageTextToText, Idefics3ImageProcessorPil, Idefics3Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tile = 512 if full_size else 64
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=True,
        size={"longest_edge": 4 * tile},
        max_image_size={"longest_edge": tile},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    image_seq_len = 64 if full_size else 16
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    pad_id = tokenizer.pad_token_id
    if full_size:
        # The tiny tokenizer's ids are all below the real vocab size; the real image token id
        # only matters for the embedding row it selects, so map it through the config.
        config = smolvlm_256m_config(image_token_id=image_token_id, pad_token_id=pad_id)
    else:
        config = tiny_idefics3_config(len(tokenizer), image_token_id, pad_id)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=None)
def _cached_build(full_size: bool) -> Path:
    root = Path(tempfile.mkdtemp(prefix="cares-tiny-idefics3-" if not full_size else "cares-smolvlm256-"))
    return build_idefics3(root / "model", full_size=full_size)


def tiny_idefics3(folder: str | os.PathLike | None = None) -> Path:
    """The tiny random Idefics3 saved to a folder (built once per process when ``folder`` is None)."""
    if folder is None:
        return _cached_build(False)
    return build_idefics3(folder)


def smolvlm_256m_random(folder: str | os.PathLike | None = None) -> Path:
    """SmolVLM-256M-Instruct's architecture with random weights, saved to a folder (cached per process)."""
    if folder is None:
        return _cached_build(True)
    return build_idefics3(folder, full_size=True)
