"""Argos Translate packages run directly on CTranslate2 and SentencePiece.

An Argos package is a directory holding ``metadata.json`` (``from_code``,
``to_code``, ``package_version``, ...), a CTranslate2 model in ``model/`` and
its SentencePiece tokenizer ``sentencepiece.model``. The ``argostranslate``
library is not used: it imports torch (gigabytes, for nothing CTranslate2
needs) and writes caches and settings below the home directory, and the
gateway's privacy rule is that serving writes nothing. For the same reason a
zipped package (``.argosmodel``) is refused rather than unpacked into a
temporary directory at run time: CTranslate2 loads only from a directory, so
the package has to be unpacked beforehand, which ``hushgate models pull``
does.

Argos splits sentences with Stanza (another torch model, in ``stanza/`` in
some packages); here a punctuation regex does it (`split_sentences`), which
splits after abbreviations such as "Mr." too. Each sentence is encoded into
SentencePiece pieces, every sentence of every text in a call goes to
CTranslate2 in one ``translate_batch`` (CTranslate2 cuts it into
``max_batch_size`` pieces itself), and the translated sentences of each text are
decoded and joined again. A package whose metadata names a ``target_prefix``
(multilingual models choose their output language with it) gets that token
forced at the start of every translation, and it is removed from the result.

With no direct package for a pair, translation pivots through English when
source→en and en→target are both installed: the English sentences of the
first package go, still one per sentence, into the second package's batch.

One ``ctranslate2.Translator`` per package is loaded at start-up and shared by
all sessions; CTranslate2 translators are safe to call from several threads
(with ``inter_threads=1`` calls take turns, each using ``intra_threads``).
"""

from __future__ import annotations

import json
import re
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from hushgate.engines.base import EngineError, EngineOptions, EngineSpec, ModelNotFound

if TYPE_CHECKING:
    import ctranslate2
    import sentencepiece

PIVOT_LANGUAGE: Final = "en"
DEFAULT_BEAM_SIZE: Final = 2
DEFAULT_MAX_BATCH_SIZE: Final = 32
# CTranslate2's own default; a looping model stops here.
DEFAULT_MAX_DECODING_LENGTH: Final = 256
DEFAULT_COMPUTE_TYPE: Final = "int8"
# Argos Translate's value: a mild preference for longer translations.
LENGTH_PENALTY: Final = 0.2
METADATA_FILE: Final = "metadata.json"
MODEL_DIR: Final = "model"
TOKENIZER_FILE: Final = "sentencepiece.model"
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


def _language(code: str) -> str:
    return code.strip().replace("_", "-").lower()


@dataclass(frozen=True, slots=True)
class ArgosMetadata:
    """What the engine reads from an Argos package's ``metadata.json``."""

    from_code: str
    to_code: str
    version: tuple[int, ...]
    target_prefix: str


def _version(raw: Any) -> tuple[int, ...]:
    # "1.0", "1.9.1", 1.1: used only to prefer the newer of two packages.
    numbers = re.findall(r"\d+", str(raw)) if raw is not None else []
    return tuple(int(n) for n in numbers)


def read_metadata(package_dir: Path) -> ArgosMetadata:
    """Parse ``metadata.json``; EngineError naming the file when it is not an Argos package's."""
    path = package_dir / METADATA_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot read Argos package metadata {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise EngineError(f"Argos package metadata {path} is not a JSON object")
    from_code, to_code = raw.get("from_code"), raw.get("to_code")
    if not isinstance(from_code, str) or not isinstance(to_code, str) or not from_code or not to_code:
        raise EngineError(f"Argos package metadata {path} lacks from_code/to_code")
    target_prefix = raw.get("target_prefix") or ""
    if not isinstance(target_prefix, str):
        raise EngineError(f"Argos package metadata {path}: target_prefix must be a string")
    return ArgosMetadata(
        from_code=_language(from_code),
        to_code=_language(to_code),
        version=_version(raw.get("package_version")),
        target_prefix=target_prefix,
    )


def _is_zip(path: Path) -> bool:
    return path.suffix == ".argosmodel" or (path.is_file() and zipfile.is_zipfile(path))


def _zip_refusal(path: Path) -> EngineError:
    return EngineError(
        f"{path} is a zipped Argos package; CTranslate2 loads only from a directory and the "
        f"gateway writes nothing while serving, so unpack it first: `hushgate models pull` "
        f"installs packages unpacked, or run `unzip {path.name} -d <models dir>` and point the "
        "engine at the directory that holds metadata.json"
    )


def find_packages(path: Path) -> list[Path]:
    """Package directories at ``path``: the package itself, or its subdirectories that are packages.

    A zipped package is refused with how to unpack it. Subdirectories that are
    not Argos packages are skipped (a models directory holds other engines'
    models too).
    """
    if _is_zip(path):
        raise _zip_refusal(path)
    if not path.is_dir():
        raise ModelNotFound(f"no Argos package at {path}")
    if (path / METADATA_FILE).is_file():
        return [path]
    packages: list[Path] = []
    zipped: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue  # unfinished pulls
        if child.is_dir() and (child / METADATA_FILE).is_file() and (child / MODEL_DIR).is_dir():
            packages.append(child)
        elif child.is_file() and _is_zip(child):
            zipped.append(child)
    if not packages and zipped:
        raise _zip_refusal(zipped[0])
    return packages


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
        source_code, target_code = _language(source), _language(target)
        route = routes.get((source_code, target_code)) or routes.get(
            (source_code.split("-")[0], target_code.split("-")[0])
        )
        if route is None:
            installed = ", ".join(f"{s}-{t}" for s, t in self._pairs)
            raise EngineError(f"Argos cannot translate {source}-{target}; installed pairs: {installed}")
        return route


def newest_packages(package_dirs: Sequence[Path]) -> list[tuple[Path, ArgosMetadata]]:
    """One package per language pair, the highest ``package_version``, before any is loaded."""
    chosen: dict[tuple[str, str], tuple[Path, ArgosMetadata]] = {}
    for package_dir in package_dirs:
        metadata = read_metadata(package_dir)
        pair = (metadata.from_code, metadata.to_code)
        known = chosen.get(pair)
        if known is None or metadata.version > known[1].version:
            chosen[pair] = (package_dir, metadata)
    return list(chosen.values())


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
    if _is_zip(configured):
        # Refused before locate_model, which would hand back the zip as the model.
        raise _zip_refusal(configured)
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
