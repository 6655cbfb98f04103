"""The Argos engine on tiny, real CTranslate2 packages built by the test.

No Argos package can be downloaded here, so `tests.argos_fixture` trains a
SentencePiece tokenizer on a few dozen lines and saves a one-layer Transformer
with random weights through CTranslate2's own model writer, next to a
``metadata.json`` like a real package's. These tests prove the plumbing
(loading, tokenising, one batched call, sentence splitting, decoding, pivoting,
refusals), not translation quality: the random model's output is gibberish
made of the tokenizer's pieces.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hushgate.engines.argos import ArgosTranslator, create, split_sentences
from hushgate.engines.argos_packages import newest_packages
from hushgate.engines.base import EngineError, EngineOptions, ModelNotFound
from tests.argos_fixture import build_package

pytest.importorskip("ctranslate2")
pytest.importorskip("sentencepiece")

# Random weights seldom choose the end token, so decoding is cut short.
FAST = {"max_decoding_length": 8}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding xx→en and en→yy, as a models directory would."""
    root = tmp_path_factory.mktemp("argos-packages")
    build_package(root / "translate-xx_en-1_0", "xx", "en", seed=1)
    build_package(root / "translate-en_yy-1_0", "en", "yy", seed=2)
    return root


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One package (en→pp) whose metadata asks for a target prefix token."""
    directory = tmp_path_factory.mktemp("argos-prefixed") / "en_pp"
    return build_package(directory, "en", "pp", seed=3, target_prefix="__pp__")


@pytest.fixture
def engine(packages: Path) -> Iterator[ArgosTranslator]:
    translator = create(EngineOptions(model=str(packages), extra=FAST))
    yield translator
    translator.close()


class Spy:
    """Stands in for a ctranslate2.Translator, recording every translate_batch call."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[tuple[list[list[str]], dict[str, Any], list[Any]]] = []

    def translate_batch(self, tokens: list[list[str]], **kwargs: Any) -> list[Any]:
        results = self.real.translate_batch(tokens, **kwargs)
        self.calls.append((tokens, kwargs, results))
        return results

    def unload_model(self) -> None:
        self.real.unload_model()


def spy_on(engine: ArgosTranslator, source: str, target: str) -> Spy:
    package = engine.package(source, target)
    spy = Spy(package.translator)
    package.translator = spy  # type: ignore[assignment]
    return spy


def test_packages_load_and_pivot_pairs_are_listed(engine: ArgosTranslator) -> None:
    assert engine.name == "argos"
    assert engine.pairs() == [("en", "yy"), ("xx", "en"), ("xx", "yy")]
    assert engine.route("xx", "yy") == [("xx", "en"), ("en", "yy")]
    assert engine.route("xx", "en") == [("xx", "en")]


def test_a_batch_is_one_translate_batch_call(engine: ArgosTranslator) -> None:
    spy = spy_on(engine, "xx", "en")
    tokenizer = engine.package("xx", "en").tokenizer
    texts = ["The cat sat on the mat. We like green apples!", "", "Rain falls on the roof"]
    out = engine.translate(texts, "xx", "en")

    assert len(spy.calls) == 1
    tokens, kwargs, results = spy.calls[0]
    sentences = ["The cat sat on the mat.", "We like green apples!", "Rain falls on the roof"]
    assert tokens == [tokenizer.encode(s, out_type=str) for s in sentences]
    assert kwargs["beam_size"] == 2 and kwargs["max_batch_size"] == 32
    assert kwargs["target_prefix"] is None

    decoded = [tokenizer.decode(result.hypotheses[0]).strip() for result in results]
    assert out == [f"{decoded[0]} {decoded[1]}", "", decoded[2]]


def test_outputs_are_decoded_vocabulary_pieces(engine: ArgosTranslator) -> None:
    spy = spy_on(engine, "xx", "en")
    tokenizer = engine.package("xx", "en").tokenizer
    vocabulary = {tokenizer.id_to_piece(i) for i in range(tokenizer.get_piece_size())}
    out = engine.translate(["The moon rises slowly.", "Birds sing in the morning."], "xx", "en")
    (_tokens, _kwargs, results) = spy.calls[0]
    assert all(isinstance(text, str) for text in out) and any(out)
    for text, result in zip(out, results, strict=True):
        pieces = result.hypotheses[0]
        assert set(pieces) <= vocabulary
        assert text == tokenizer.decode(pieces).strip()
        # SentencePiece turns its word-start marks into spaces.
        assert "▁" not in text


def test_sentence_splitting() -> None:
    assert split_sentences("Hello there. How are you? Fine!") == ["Hello there.", "How are you?", "Fine!"]
    assert split_sentences("  No end mark  ") == ["No end mark"]
    assert split_sentences("") == [] and split_sentences(" \n ") == []
    assert split_sentences("“Quoted.” Next one.") == ["“Quoted.”", "Next one."]
    assert split_sentences("Pi is 3.14 here.\nNew line…  Then") == ["Pi is 3.14 here.", "New line…", "Then"]
    assert split_sentences("你好。再见！") == ["你好。", "再见！"]


def test_pivot_goes_through_english(engine: ArgosTranslator) -> None:
    first, second = spy_on(engine, "xx", "en"), spy_on(engine, "en", "yy")
    out = engine.translate(["The cat sat. We walk to school.", "He drinks warm milk."], "xx", "yy")

    assert len(first.calls) == 1 and len(second.calls) == 1
    english_tokenizer = engine.package("en", "yy").tokenizer
    xx_tokenizer = engine.package("xx", "en").tokenizer
    english = [xx_tokenizer.decode(r.hypotheses[0]).strip() for r in first.calls[0][2]]
    assert len(english) == 3  # one per sentence
    assert second.calls[0][0] == [english_tokenizer.encode(s, out_type=str) for s in english]
    final = [english_tokenizer.decode(r.hypotheses[0]).strip() for r in second.calls[0][2]]
    assert out == [f"{final[0]} {final[1]}", final[2]]


def test_a_direct_package_beats_a_pivot(packages: Path, tmp_path: Path) -> None:
    for child in packages.iterdir():
        (tmp_path / child.name).symlink_to(child)
    build_package(tmp_path / "translate-xx_yy-1_0", "xx", "yy", seed=4)
    translator = create(EngineOptions(model=str(tmp_path), extra=FAST))
    try:
        assert translator.route("xx", "yy") == [("xx", "yy")]
    finally:
        translator.close()


def test_beam_and_batch_options_reach_ctranslate2(packages: Path) -> None:
    translator = create(
        EngineOptions(model=str(packages), threads=2, extra={**FAST, "beam_size": 3, "max_batch_size": 1})
    )
    try:
        spy = spy_on(translator, "xx", "en")
        out = translator.translate(["A dog runs. The sun is bright.", "We walk."], "xx", "en")
        assert len(out) == 2 and len(spy.calls) == 1
        kwargs = spy.calls[0][1]
        assert kwargs["beam_size"] == 3 and kwargs["max_batch_size"] == 1
        assert kwargs["max_decoding_length"] == FAST["max_decoding_length"]
    finally:
        translator.close()
    with pytest.raises(EngineError, match="beam_size"):
        create(EngineOptions(model=str(packages), extra={"beam_size": 0}))


def test_a_target_prefix_is_forced_and_removed(prefixed: Path) -> None:
    translator = create(EngineOptions(model=str(prefixed), extra=FAST))
    try:
        spy = spy_on(translator, "en", "pp")
        out = translator.translate(["The cat sat.", "Rain falls. He drinks."], "en", "pp")
        _tokens, kwargs, results = spy.calls[0]
        assert kwargs["target_prefix"] == [["__pp__"]] * 3
        assert all(r.hypotheses[0][0] == "__pp__" for r in results)
        tokenizer = translator.package("en", "pp").tokenizer
        sentences = [tokenizer.decode(r.hypotheses[0][1:]).strip() for r in results]
        assert out == [sentences[0], f"{sentences[1]} {sentences[2]}"]
        assert not any(text.startswith("__pp__") for text in out)
    finally:
        translator.close()


def test_one_package_directory_can_be_named(packages: Path) -> None:
    translator = create(EngineOptions(model=str(packages / "translate-en_yy-1_0"), extra=FAST))
    try:
        assert translator.pairs() == [("en", "yy")]
    finally:
        translator.close()


def test_the_models_directory_is_scanned(packages: Path, tmp_path: Path) -> None:
    for child in packages.iterdir():
        (tmp_path / child.name).symlink_to(child)
    whisper = tmp_path / "whisper-tiny"  # another engine's model is left alone
    whisper.mkdir()
    (whisper / "model.bin").write_bytes(b"")
    (tmp_path / ".pull-unfinished").mkdir()
    translator = create(EngineOptions(models_dir=tmp_path, extra=FAST))
    try:
        assert translator.pairs() == [("en", "yy"), ("xx", "en"), ("xx", "yy")]
    finally:
        translator.close()


def test_no_package_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no Argos package"):
        create(EngineOptions(models_dir=tmp_path))
    with pytest.raises(ModelNotFound):
        create(EngineOptions(models_dir=tmp_path / "missing"))


def _zip(package: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(package.rglob("*")):
            archive.write(path, Path(package.name) / path.relative_to(package))
    return target


def test_a_zipped_package_is_refused_with_how_to_unpack_it(packages: Path, tmp_path: Path) -> None:
    archive = _zip(packages / "translate-xx_en-1_0", tmp_path / "translate-xx_en-1_0.argosmodel")
    with pytest.raises(EngineError, match=r"zipped Argos package.*unpack it first.*hushgate models pull.*unzip"):
        create(EngineOptions(model=str(archive)))
    # A directory holding only zips says the same.
    with pytest.raises(EngineError, match="zipped Argos package"):
        create(EngineOptions(models_dir=tmp_path))
    # Nothing was unpacked anywhere.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["translate-xx_en-1_0.argosmodel"]


def test_an_unknown_pair_names_the_installed_ones(engine: ArgosTranslator) -> None:
    with pytest.raises(EngineError, match="installed pairs: en-yy, xx-en, xx-yy"):
        engine.translate(["Hello."], "yy", "xx")


def test_bad_metadata_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "broken"
    (package / "model").mkdir(parents=True)
    (package / "metadata.json").write_text(json.dumps({"from_code": "xx"}))
    with pytest.raises(EngineError, match="lacks from_code/to_code"):
        create(EngineOptions(model=str(package)))


def test_the_newest_version_of_a_pair_is_chosen(packages: Path, tmp_path: Path) -> None:
    older = tmp_path / "old"
    older.mkdir()
    (older / "metadata.json").write_text(json.dumps({"from_code": "xx", "to_code": "en", "package_version": "1.0"}))
    newer = tmp_path / "new"
    newer.mkdir()
    (newer / "metadata.json").write_text(json.dumps({"from_code": "xx", "to_code": "en", "package_version": "1.10"}))
    assert [path for path, _ in newest_packages([newer, older])] == [newer]
    assert [path for path, _ in newest_packages([older, newer])] == [newer]


def test_threads_share_the_translator(engine: ArgosTranslator) -> None:
    texts = ["The cat sat on the mat.", "We like green apples.", "The moon rises slowly."]
    expected = engine.translate(texts, "xx", "yy")
    failures: list[str] = []

    def work() -> None:
        for _ in range(5):
            got = engine.translate(texts, "xx", "yy")
            if got != expected:
                failures.append(repr(got))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_a_closed_translator_refuses_work(packages: Path) -> None:
    translator = create(EngineOptions(model=str(packages), extra=FAST))
    translator.close()
    with pytest.raises(EngineError, match="closed"):
        translator.translate(["Hello."], "xx", "en")


def test_torch_is_not_installed() -> None:
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("argostranslate") is None


def test_the_engine_does_not_import_torch(packages: Path) -> None:
    # A fresh interpreter: this test process may have imported anything.
    script = (
        "import sys\n"
        "from hushgate.engines.argos import create\n"
        "from hushgate.engines.base import EngineOptions\n"
        f"engine = create(EngineOptions(model={str(packages)!r}, extra={{'max_decoding_length': 4}}))\n"
        "engine.translate(['The cat sat.'], 'xx', 'yy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'argostranslate', 'stanza')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
