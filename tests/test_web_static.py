"""The web pages and the JS SDK as files: served right, self-contained, well-formed.

Fast and browser-free. When Node.js is on the machine, the JavaScript is also
syntax-checked and the MessagePack codec is checked byte for byte against the
Python msgpack library the server uses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import msgpack
import pytest

from hushgate.server.settings import Settings
from tests.conftest import serve
from tests.fakes import fake_spec

WEB = Path(__file__).resolve().parents[1] / "src" / "hushgate" / "web"
JS_TYPES = {"text/javascript", "application/javascript"}


@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    with serve(
        Settings(stt=("en=fake",), translators=(), synthesizers=(), speaker_encoder=""), [fake_spec()]
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("/", {"text/html"}),
        ("/overlay", {"text/html"}),
        ("/web/index.html", {"text/html"}),
        ("/web/overlay.html", {"text/html"}),
        ("/web/sdk.js", JS_TYPES),
        ("/web/demo.js", JS_TYPES),
        ("/web/overlay.js", JS_TYPES),
        ("/web/pcm-worklet.js", JS_TYPES),
        ("/web/msgpack.js", JS_TYPES),
        ("/web/style.css", {"text/css"}),
    ],
)
def test_served_with_content_type(server, path: str, types: set[str]) -> None:  # noqa: ANN001
    response = httpx.get(server.http + path, timeout=10)
    assert response.status_code == 200, path
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type in types, f"{path} is served as {media_type}"
    assert response.text.strip()


def test_pages_reference_files_that_exist() -> None:
    for page in ("index.html", "overlay.html"):
        html = (WEB / page).read_text()
        refs = re.findall(r'(?:src|href)="(web/[^"]+)"', html)
        assert refs, page
        for ref in refs:
            assert (WEB / ref.removeprefix("web/")).is_file(), f"{page} refers to missing {ref}"


def test_pages_are_served_from_root_and_overlay_with_their_scripts(server) -> None:  # noqa: ANN001
    index = httpx.get(server.http + "/", timeout=10).text
    assert 'src="web/demo.js"' in index and 'type="module"' in index
    for control in ('id="start"', 'id="stop"', 'id="consent"', 'id="enroll"', 'id="meter"', 'id="transcript"'):
        assert control in index
    overlay = httpx.get(server.http + "/overlay", timeout=10).text
    assert 'src="web/overlay.js"' in overlay
    assert "background: transparent" in overlay


def web_files() -> list[Path]:
    return sorted(p for p in WEB.rglob("*") if p.is_file() and p.suffix in {".html", ".js", ".css", ".json", ".svg"})


# An absolute URL (http, https, ws, wss) or a protocol-relative one in an attribute,
# a string or url(...): what a page would fetch from another host.
URL = re.compile(r"""(?i)(?:\b(?:https?|wss?):|(?<=["'(=]))//(\[[0-9a-f:]+\]|[a-z0-9.\-]+)""")


def test_no_external_urls_in_web_files() -> None:
    """Everything the pages need is served by the gateway: no CDN, no remote fonts."""
    files = web_files()
    assert len(files) >= 7
    for path in files:
        text = path.read_text()
        for match in URL.finditer(text):
            line = text[text.rfind("\n", 0, match.start()) + 1 : text.find("\n", match.start())]
            assert match.group(1).lower() in {"localhost", "127.0.0.1", "[::1]"}, (
                f"{path.name}: URL to another host in {line.strip()!r}"
            )
        if path.suffix == ".css":
            assert "@import" not in text, f"{path.name} imports a stylesheet"


def test_url_check_catches_cdns() -> None:
    samples = [
        '<script src="https://cdn.example.com/x.js">',
        "@import url(//fonts.example.org/a.css);",
        "fetch('http://api.example.net/')",
        'new WebSocket("wss://host.example/v1")',
    ]
    assert all(URL.search(s) and URL.search(s).group(1) not in {"localhost"} for s in samples)
    assert URL.search("// a comment: see //v1/stream") is None


def test_modules_import_only_local_files() -> None:
    for path in WEB.glob("*.js"):
        for spec in re.findall(r"""^\s*import\s[^'"]*['"]([^'"]+)['"]""", path.read_text(), flags=re.M):
            assert spec.startswith("./"), f"{path.name} imports {spec!r}: only ./relative modules are served"
            assert (WEB / spec[2:]).is_file(), f"{path.name} imports missing {spec}"


def test_sdk_dispatches_every_protocol_event_type() -> None:
    """The SDK dispatches by the event's own `type`, so no protocol event is lost;
    its docs name all of them, and the request helpers send the right messages."""
    sdk = (WEB / "sdk.js").read_text()
    assert "this._emit(type, msg)" in sdk
    for event in (
        "ready",
        "speech.started",
        "partial",
        "final",
        "translation",
        "tts.start",
        "tts.audio",
        "tts.end",
        "enroll.progress",
        "enrolled",
        "verified",
        "voiceprint.exported",
        "error",
        "ended",
    ):
        assert f"`{event}`" in sdk, event
    for message in (
        "start",
        "speak",
        "translate",
        "enroll",
        "verify",
        "voiceprint.export",
        "voiceprint.import",
        "voiceprint.delete",
        "flush",
        "ping",
        "stop",
        "audio",
    ):
        assert f'type: "{message}"' in sdk, message
    for method in (
        "sendPcm(",
        "sendStream(",
        "speak(",
        "translate(",
        "enroll(",
        "verify(",
        "exportVoiceprint(",
        "importVoiceprint(",
        "deleteVoiceprint(",
        "flush(",
        "ping(",
        "stop(",
    ):
        assert f"\n  {method}" in sdk or f"\n  async {method}" in sdk, method
    assert "export async function connect(url, options" in sdk
    assert 'registerProcessor("pcm-capture"' in (WEB / "pcm-worklet.js").read_text()


# Node.js checks ------------------------------------------------------------------------

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")


def copy_as_modules(tmp_path: Path) -> Path:
    """The web/ modules as .mjs files, so that Node treats them as ES modules."""
    for path in WEB.glob("*.js"):
        text = re.sub(r"""(from\s+['"]\./[\w\-]+)\.js(['"])""", r"\1.mjs\2", path.read_text())
        (tmp_path / f"{path.stem}.mjs").write_text(text)
    return tmp_path


@needs_node
def test_javascript_parses(tmp_path: Path) -> None:
    copy_as_modules(tmp_path)
    for path in sorted(tmp_path.glob("*.mjs")):
        result = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


SAMPLES = [
    {"type": "ping"},
    {"type": "start", "audio": {"sample_rate": 16000}},
    {"type": "audio", "pcm": b"\x10\x00\xf0\xff"},
    {"type": "tts.audio", "id": "s1", "pcm": b"\x00\x01"},
    {
        "type": "start",
        "audio": {"encoding": "pcm_s16le", "sample_rate": 48000, "channels": 1},
        "language": "en",
        "partials": True,
        "words": False,
        "vad": {"aggressiveness": 2, "silence_ms": 500, "max_utterance_ms": 15000},
        "translate": {"targets": ["es", "fr"], "partials": False},
        "speak": {"translations": True, "voice": None},
        "speakers": {"identify": True, "diarize": True, "voiceprints": []},
    },
    {
        "ints": [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            2**32 - 1,
            2**32,
            2**53 - 1,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            -(2**31),
            -(2**31) - 1,
            -(2**53) + 1,
        ],
        "floats": [0.5, -1.25, 3.141592653589793, 1e300],
        "strs": ["", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "e" * 70000, "héllo ✓ 日本語 🎤"],
        "bins": [b"", b"\x00" * 255, b"\x01" * 256, b"\x02" * 70000],
        "arrays": [[], list(range(15)), list(range(16)), list(range(70000))],
        "maps": [{}, {str(i): i for i in range(15)}, {str(i): i for i in range(16)}],
        "nested": {"a": [None, True, False, {"b": [1.5, "x"]}]},
    },
]

NODE_SCRIPT = """
import { encode, decode } from "./msgpack.mjs";
const input = JSON.parse(await new Promise((resolve) => {
  let text = ""; process.stdin.on("data", (d) => (text += d)); process.stdin.on("end", () => resolve(text));
}));
const toHex = (u) => Buffer.from(u).toString("hex");
const out = [];
for (const item of input) {
  const bytes = Uint8Array.from(Buffer.from(item, "hex"));
  const value = decode(bytes);          // Python's bytes -> JS value
  out.push(toHex(encode(value)));       // -> back to bytes
}
// Errors the decoder must raise.
const bad = ["81a1", "c0c0", "c1", "d40100", "81c0c0", "a3ff fe fd".replace(/ /g, "")];
const errors = bad.map((h) => { try { decode(Uint8Array.from(Buffer.from(h, "hex"))); return "no error"; }
                                catch (e) { return e.name; } });
console.log(JSON.stringify({ out, errors }));
"""


@needs_node
def test_msgpack_codec_matches_python_msgpack(tmp_path: Path) -> None:
    copy_as_modules(tmp_path)
    script = tmp_path / "check.mjs"
    script.write_text(NODE_SCRIPT)
    packed = [msgpack.packb(sample, use_bin_type=True) for sample in SAMPLES]
    result = subprocess.run(
        [NODE, str(script)],
        input=json.dumps([p.hex() for p in packed]),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    for sample, original, again in zip(SAMPLES, packed, answer["out"], strict=True):
        # What the JS encoder writes must decode, in Python, to the very same value...
        assert msgpack.unpackb(bytes.fromhex(again), raw=False) == sample
        # ...and for these values be the same bytes (both pick the smallest encoding).
        assert bytes.fromhex(again) == original, sample.get("type", "mixed")
    assert answer["errors"] == ["MsgpackError"] * 6
