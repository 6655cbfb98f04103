"""Build tiny but real Argos Translate packages for tests.

A package made here has what a real one has: ``metadata.json``, a
SentencePiece tokenizer trained on a few dozen lines, and a CTranslate2
Transformer (one layer, two heads, 16 dimensions) saved by CTranslate2's own
model writer. Its weights are random, so it translates nothing: it proves the
loading, tokenising, batching and decoding plumbing, not translation quality.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

LINES = [
    "The cat sat on the mat.",
    "A dog runs in the park!",
    "We like green apples.",
    "She reads a book at night?",
    "The sun is bright today.",
    "My friend lives near the sea.",
    "They play music on Sunday.",
    "Birds sing in the morning.",
    "He drinks warm milk.",
    "The train leaves at noon.",
    "Rain falls on the roof.",
    "Children laugh and run.",
    "Open the window, please.",
    "The river is long and wide.",
    "We walk to school.",
    "The moon rises slowly.",
]
MODEL_DIM = 16
FFN_DIM = 32


def _train_tokenizer(vocab_size: int, symbols: list[str]) -> bytes:
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES * 3),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        user_defined_symbols=symbols,
        minloglevel=2,
    )
    return model.getvalue()


def _random_transformer(pieces: list[str], seed: int):  # noqa: ANN202 - a ctranslate2 spec
    from ctranslate2.specs import model_spec, transformer_spec

    spec = transformer_spec.TransformerSpec.from_config(1, 2)
    rng = np.random.default_rng(seed)
    vocab, d, ff = len(pieces), MODEL_DIM, FFN_DIM

    def shape(scope: str, attr: str) -> tuple[int, ...]:
        if attr in ("gamma", "beta"):
            return (d,)
        if "embeddings" in scope or scope.endswith("projection"):
            return (vocab, d)
        if scope.endswith("ffn/linear_0"):
            return (ff, d)
        if scope.endswith("ffn/linear_1"):
            return (d, ff)
        if scope.endswith("self_attention/linear_0"):
            return (3 * d, d)  # fused query, key and value
        if scope.endswith("/attention/linear_1"):
            return (2 * d, d)  # fused key and value of the encoder attention
        return (d, d)

    def fill(layer, name: str, value) -> None:  # noqa: ANN001 - ctranslate2 visitor
        if value is not None:
            return
        scope, _, attr = name.rpartition("/")
        if attr == "gamma":
            array = np.ones(shape(scope, attr))
        elif attr == "beta":
            array = np.zeros(shape(scope, attr))
        else:
            array = rng.normal(0.0, 0.5, shape(scope, attr))
        setattr(model_spec.index_spec(spec, scope), attr, array.astype(np.float32))

    model_spec.visit_spec(spec, fill)
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    spec.validate()
    return spec


def build_package(
    directory: Path,
    from_code: str,
    to_code: str,
    *,
    seed: int = 0,
    version: str = "1.0",
    target_prefix: str | None = None,
    vocab_size: int = 72,
) -> Path:
    """Write an unpacked Argos package for ``from_code`` → ``to_code`` into ``directory``."""
    import sentencepiece

    directory.mkdir(parents=True)
    tokenizer = _train_tokenizer(vocab_size, [target_prefix] if target_prefix else [])
    (directory / "sentencepiece.model").write_bytes(tokenizer)
    processor = sentencepiece.SentencePieceProcessor(model_proto=tokenizer)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    (directory / "model").mkdir()
    _random_transformer(pieces, seed).save(str(directory / "model"))
    metadata: dict[str, object] = {
        "package_version": version,
        "argos_version": "1.0",
        "from_code": from_code,
        "from_name": from_code.upper(),
        "to_code": to_code,
        "to_name": to_code.upper(),
        "type": "translate",
        "links": [],
    }
    if target_prefix:
        metadata["target_prefix"] = target_prefix
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=4))
    (directory / "README.md").write_text("A test package with random weights.\n")
    return directory
