"""Argos Translate packages run directly on CTranslate2 and SentencePiece.

The ``argostranslate`` library is not used: it imports torch (gigabytes, for
nothing CTranslate2 needs) and writes caches and settings below the home
directory, and the gateway's privacy rule is that serving writes nothing.
Finding and reading packages is `hushgate.engines.argos_packages`'s job,
running one on CTranslate2 `hushgate.engines.argos_ctranslate2`'s.

Argos splits sentences with Stanza (another torch model, in ``stanza/`` in
some packages); here a punctuation regex does it (`split_sentences`), which
splits after abbreviations such as "Mr." too. Every sentence of every text in a
call goes to the package in one batch, and the translated sentences of each
text are joined again.

With no direct package for a pair, translation pivots through English when
source→en and en→target are both installed: the English sentences of the
first package go, still one per sentence, into the second package's batch.

One ``ctranslate2.Translator`` per package is loaded at start-up and shared by
all sessions; CTranslate2 translators are safe to call from several threads
(with ``inter_threads=1`` calls take turns, each using ``intra_threads``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from hushgate.engines.argos_ctranslate2 import ArgosPackage
from hushgate.engines.argos_packages import find_packages, is_zip, language_key, newest_packages, zip_refusal
from hushgate.engines.base import EngineError, EngineOptions, EngineSpec, ModelNotFound

PIVOT_LANGUAGE: Final = "en"
DEFAULT_BEAM_SIZE: Final = 2
DEFAULT_MAX_BATCH_SIZE: Final = 32
# CTranslate2's own default; a looping model stops here.
DEFAULT_MAX_DECODING_LENGTH: Final = 256
DEFAULT_COMPUTE_TYPE: Final = "int8"
PULL_HINT: Final = "hushgate models pull translate-en_es"

# A sentence ends at . ! ? or … (with any closing quotes or brackets) before
# a blank, or at a CJK full stop, question or exclamation mark.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*\s+|[。！？]+")
# Languages written without spaces between sentences.
_UNSPACED_LANGUAGES: Final = frozenset({"ja", "zh", "zt", "th", "lo", "km", "my"})


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped; none for a blank text."""
    sentences: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        piece = text[start : end.end()].strip()
        if piece:
            sentences.append(piece)
        start = end.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


class ArgosTranslator:
    """Every loaded Argos package, plus the pairs reachable by pivoting through English.

    Thread-safe: the packages are read-only after loading and CTranslate2
    translators may be called from several threads.
    """

    name = "argos"

    def __init__(
        self,
        packages: Sequence[ArgosPackage],
        *,
        beam_size: int = DEFAULT_BEAM_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_decoding_length: int = DEFAULT_MAX_DECODING_LENGTH,
    ) -> None:
        if not packages:
            raise ModelNotFound(f"no Argos package is installed (try: {PULL_HINT})")
        direct: dict[tuple[str, str], ArgosPackage] = {}
        for package in packages:
            pair = (package.source, package.target)
            if pair in direct:
                raise EngineError(f"two Argos packages for {pair[0]}-{pair[1]}: {direct[pair].path} and {package.path}")
            direct[pair] = package
        routes: dict[tuple[str, str], tuple[ArgosPackage, ...]] = {pair: (p,) for pair, p in direct.items()}
        for (source, middle), first in direct.items():
            if middle != PIVOT_LANGUAGE:
                continue
            for (start, target), second in direct.items():
                if start == PIVOT_LANGUAGE and target != source:
                    routes.setdefault((source, target), (first, second))
        self._packages = list(direct.values())
        self._routes = routes
        self._pairs = sorted(routes)
        self._beam_size = beam_size
        self._max_batch_size = max_batch_size
        self._max_decoding_length = max_decoding_length
        self._lock = threading.Lock()
        self._closed = False

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def package(self, source: str, target: str) -> ArgosPackage:
        """The package installed for exactly this pair (not a pivot)."""
        route = self._route(source, target)
        if len(route) != 1:
            raise EngineError(f"Argos translates {source}-{target} by pivoting, not with one package")
        return route[0]

    def route(self, source: str, target: str) -> list[tuple[str, str]]:
        """The package pairs a translation goes through, in order."""
        return [(p.source, p.target) for p in self._route(source, target)]

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        route = self._route(source, target)
        per_text = [split_sentences(text) for text in texts]
        sentences = [sentence for group in per_text for sentence in group]
        for package in route:
            sentences = package.translate_sentences(
                sentences,
                beam_size=self._beam_size,
                max_batch_size=self._max_batch_size,
                max_decoding_length=self._max_decoding_length,
            )
        joiner = "" if route[-1].target.split("-")[0] in _UNSPACED_LANGUAGES else " "
        results: list[str] = []
        position = 0
        for text, group in zip(texts, per_text, strict=True):
            if not group:
                results.append(text)  # blank in, blank out
                continue
            results.append(joiner.join(sentences[position : position + len(group)]))
            position += len(group)
        return results

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            packages, self._packages = self._packages, []
            self._routes = {}
        for package in packages:
            package.close()

    def _route(self, source: str, target: str) -> tuple[ArgosPackage, ...]:
        with self._lock:
            if self._closed:
                raise EngineError("the Argos translator has been closed")
            routes = self._routes
        source_code, target_code = language_key(source), language_key(target)
        route = routes.get((source_code, target_code)) or routes.get(
            (source_code.split("-")[0], target_code.split("-")[0])
        )
        if route is None:
            installed = ", ".join(f"{s}-{t}" for s, t in self._pairs)
            raise EngineError(f"Argos cannot translate {source}-{target}; installed pairs: {installed}")
        return route


def _int_option(options: EngineOptions, key: str, default: int) -> int:
    value = options.extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"argos: {key!r} must be a positive integer, got {value!r}")
    return value


def _package_dirs(options: EngineOptions) -> list[Path]:
    from hushgate.models.locate import default_models_dir, locate_model

    if options.model is None:
        root = options.models_dir if options.models_dir is not None else default_models_dir()
        if not root.is_dir():
            raise ModelNotFound(f"no Argos package is installed: {root} does not exist (try: {PULL_HINT})")
        return find_packages(root)
    configured = Path(options.model).expanduser()
    if is_zip(configured):
        # Refused before locate_model, which would hand back the zip as the model.
        raise zip_refusal(configured)
    located = locate_model(options.model, engine="argos", models_dir=options.models_dir)
    return find_packages(located)


def create(options: EngineOptions) -> ArgosTranslator:
    """Load the package(s) at ``options.model``, else every package in the models directory.

    ``options.model`` is one package directory, a directory of packages, or a
    catalogue name (``translate-en_es``).
    """
    beam_size = _int_option(options, "beam_size", DEFAULT_BEAM_SIZE)
    max_batch_size = _int_option(options, "max_batch_size", DEFAULT_MAX_BATCH_SIZE)
    max_decoding_length = _int_option(options, "max_decoding_length", DEFAULT_MAX_DECODING_LENGTH)
    compute_type = options.extra.get("compute_type", DEFAULT_COMPUTE_TYPE)
    if not isinstance(compute_type, str):
        raise EngineError(f"argos: 'compute_type' must be a string, got {compute_type!r}")
    chosen = newest_packages(_package_dirs(options))
    if not chosen:
        raise ModelNotFound(f"no Argos package is installed (try: {PULL_HINT})")
    packages: list[ArgosPackage] = []
    try:
        for package_dir, metadata in chosen:
            packages.append(
                ArgosPackage(package_dir, metadata, threads=max(options.threads, 1), compute_type=compute_type)
            )
        return ArgosTranslator(
            packages,
            beam_size=beam_size,
            max_batch_size=max_batch_size,
            max_decoding_length=max_decoding_length,
        )
    except BaseException:
        for package in packages:
            package.close()
        raise


SPEC = EngineSpec(
    name="argos",
    capability="translate",
    factory=create,
    description="Argos Translate packages on CTranslate2 (no torch): neural, offline, pivots through English.",
)
