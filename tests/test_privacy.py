"""Privacy promises, tested: a session writes no file and logs no words."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.settings import Settings
from tests.audio_helpers import read_wav
from tests.conftest import serve
from tests.wsclient import Client

pytestmark = pytest.mark.slow
WORDS = ("americans", "country")


def files_changed_since(roots: list[Path], since: float, skip: list[Path]) -> list[str]:
    changed = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not any((here / d) == s for s in skip) and d != "__pycache__"]
            for name in filenames:
                path = here / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if max(st.st_mtime, st.st_ctime) >= since:
                    changed.append(str(path))
    return changed


async def run_session(server, pcm: np.ndarray) -> list[str]:  # noqa: ANN001
    client = await Client.connect(server.ws())
    await client.start()
    client.read_in_background()
    await client.stream(np.concatenate([pcm, np.zeros(16_000, np.int16)]))
    received = await client.finish()
    return [f["text"].lower() for f in received.of("final")]


@pytest.mark.parametrize("log_content", [False, True])
async def test_no_file_is_written_and_logs_carry_no_words(
    audio_dir: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path, log_content: bool
) -> None:
    pcm, _ = read_wav(audio_dir / "misc" / "jfk.wav")
    caplog.set_level(logging.DEBUG)
    with serve(Settings(stt=("en=whisper",), log_content=log_content, log_level="debug")) as server:
        time.sleep(1.1)  # filesystem timestamps can be coarse
        since = time.time() - 0.01
        finals = await run_session(server, pcm)
        assert any(w in " ".join(finals) for w in WORDS), finals  # the session really heard the words
        roots = [Path.cwd(), Path(tempfile.gettempdir()), Path.home()]
        changed = files_changed_since(roots, since, skip=[tmp_path, Path.cwd() / ".pytest_cache"])
    logged = "\n".join(r.getMessage().lower() for r in caplog.records)
    if log_content:
        # The control: the operator's switch really puts words into the log,
        # so the assertion below is able to fail.
        assert any(w in logged for w in WORDS)
    else:
        assert not any(w in logged for w in WORDS), [m for m in logged.splitlines() if any(w in m for w in WORDS)]
        assert "session" in logged  # logging itself works and carries ids
    assert changed == [], changed
