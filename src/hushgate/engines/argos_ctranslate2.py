"""One loaded Argos package: its SentencePiece tokenizer and its CTranslate2 translator.

Each sentence is encoded into SentencePiece pieces, all the sentences of a call
go to CTranslate2 in one ``translate_batch`` (CTranslate2 cuts it into
``max_batch_size`` pieces itself), and the translations are decoded again. A
package whose metadata names a ``target_prefix`` (multilingual models choose
their output language with it) gets that token forced at the start of every
translation, and it is removed from the result.

One ``ctranslate2.Translator`` per package is loaded at start-up and shared by
all sessions; CTranslate2 translators are safe to call from several threads
(with ``inter_threads=1`` calls take turns, each using ``intra_threads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from hushgate.engines.argos_packages import MODEL_DIR, ArgosMetadata
from hushgate.engines.base import EngineError

if TYPE_CHECKING:
    import ctranslate2
    import sentencepiece

# Argos Translate's value: a mild preference for longer translations.
LENGTH_PENALTY: Final = 0.2
TOKENIZER_FILE: Final = "sentencepiece.model"


class ArgosPackage:
    """One loaded package: its tokenizer and its CTranslate2 translator."""

    def __init__(
        self,
        package_dir: Path,
        metadata: ArgosMetadata,
        *,
        threads: int,
        compute_type: str,
    ) -> None:
        import ctranslate2
        import sentencepiece

        model_dir = package_dir / MODEL_DIR
        tokenizer_file = package_dir / TOKENIZER_FILE
        if not (model_dir / "model.bin").is_file():
            raise EngineError(f"Argos package {package_dir} has no CTranslate2 model in {model_dir}")
        if not tokenizer_file.is_file():
            # Newer Argos packages may carry a BPE tokenizer instead.
            raise EngineError(
                f"Argos package {package_dir} has no {TOKENIZER_FILE}; only SentencePiece packages are supported"
            )
        self.path = package_dir
        self.source = metadata.from_code
        self.target = metadata.to_code
        self.version = metadata.version
        self.target_prefix = metadata.target_prefix
        try:
            self.tokenizer: sentencepiece.SentencePieceProcessor = sentencepiece.SentencePieceProcessor(
                model_file=str(tokenizer_file)
            )
        except (OSError, RuntimeError) as exc:
            raise EngineError(f"cannot load the tokenizer {tokenizer_file}: {exc}") from exc
        try:
            # Replaced by the tests with a spy, hence a plain attribute.
            self.translator: ctranslate2.Translator = ctranslate2.Translator(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                intra_threads=threads,
                inter_threads=1,
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot load the CTranslate2 model {model_dir}: {exc}") from exc

    def translate_sentences(
        self,
        sentences: list[str],
        *,
        beam_size: int,
        max_batch_size: int,
        max_decoding_length: int,
    ) -> list[str]:
        """One translation per sentence, in order, through a single ``translate_batch``."""
        if not sentences:
            return []
        tokens = [self.tokenizer.encode(sentence, out_type=str) for sentence in sentences]
        prefix = [[self.target_prefix] for _ in tokens] if self.target_prefix else None
        try:
            results = self.translator.translate_batch(
                tokens,
                target_prefix=prefix,
                beam_size=beam_size,
                max_batch_size=max_batch_size,
                max_decoding_length=max_decoding_length,
                length_penalty=LENGTH_PENALTY,
                replace_unknowns=True,
            )
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"CTranslate2 failed on {self.source}-{self.target}: {exc}") from exc
        translations: list[str] = []
        for result in results:
            pieces = list(result.hypotheses[0])
            # CTranslate2 returns the forced prefix as part of the hypothesis.
            if self.target_prefix and pieces[:1] == [self.target_prefix]:
                pieces = pieces[1:]
            text = self.tokenizer.decode(pieces)
            if self.target_prefix and text.startswith(self.target_prefix):
                text = text[len(self.target_prefix) :]
            translations.append(text.strip())
        return translations

    def close(self) -> None:
        # Frees the model's memory now rather than when the last reference goes.
        self.translator.unload_model()
