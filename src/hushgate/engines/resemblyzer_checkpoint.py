"""Reading the tensors of a torch checkpoint without torch.

A checkpoint is a pickle; this module unpickles it with an unpickler that
refuses every global except the few names a state dict needs, maps those to
local stand-ins, and only then reads the raw storage bytes into numpy arrays,
checking every tensor's layout against its storage first.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from hushgate.engines.base import EngineError

# torch.save's format before 1.6: pickles of this magic number, the protocol
# version and system information, then the object pickle, then the list of
# storage keys, then each storage's raw data in that order.
_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL: Final = 1001
_STORAGE_DTYPES: Final[Mapping[str, str]] = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "DoubleStorage": "<f8",
    "LongStorage": "<i8",
}


class WeightsError(EngineError):
    """A weights file is damaged, of an unknown format, or not this model."""


class _Sealed:
    """Refuses pickle's BUILD, so a checkpoint cannot rewrite a stand-in after it was checked."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError("a weights file may not set attributes of a tensor or storage")


class _StorageType(_Sealed):
    """Stands in for ``torch.FloatStorage`` and friends inside a checkpoint pickle."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: np.dtype[Any]) -> None:
        self.name = name
        self.dtype = dtype


class _Storage(_Sealed):
    __slots__ = ("dtype", "key", "numel", "view_offset")

    def __init__(self, key: str, dtype: np.dtype[Any], numel: int, view_offset: int = 0) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        # elements into the root storage, for the legacy format's storage views
        self.view_offset = view_offset


class _TensorRef(_Sealed):
    """A tensor whose storage bytes may come later in the stream."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative ints")
    return value


class _TensorRebuilder(_Sealed):
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records a tensor's layout."""

    __slots__ = ()

    def __call__(
        self,
        storage: object,
        storage_offset: object,
        size: object,
        stride: object,
        requires_grad: object = False,
        backward_hooks: object = None,
        metadata: object = None,
    ) -> _TensorRef:
        # Only the layout is recorded here; it is checked against the bytes once read.
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor must be built on a storage")
        if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
            raise pickle.UnpicklingError("tensor storage offset must be a non-negative int")
        shape = _int_tuple(size, "size")
        strides = _int_tuple(stride, "stride")
        if len(shape) != len(strides):
            raise pickle.UnpicklingError("tensor size and stride differ in length")
        return _TensorRef(storage, storage_offset, shape, strides)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch checkpoints, refusing every global but a few harmless ones.

    A checkpoint is a pickle, and an ordinary unpickler will call any function a
    pickle names; this one maps the four names a state dict needs to local
    stand-ins and raises `pickle.UnpicklingError` for anything else. The
    stand-ins are fresh objects that refuse pickle's BUILD, so a file can
    neither alter shared state nor bypass the checks made when they are built.
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        # None: this pickle may not refer to storages at all.
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRebuilder()
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storages is None:
            raise pickle.UnpicklingError("unexpected storage reference")
        # legacy: ("storage", type, key, location, numel, view_metadata)
        # zip:    ("storage", type, key, location, numel)
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise pickle.UnpicklingError(f"unsupported storage reference {pid!r:.80}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        root = self._storages.get(key)
        if root is None:
            root = _Storage(key, storage_type.dtype, numel)
            self._storages[key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is described two ways")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not all(isinstance(v, int) and v >= 0 for v in view[1:])
            or view[1] + view[2] > numel
        ):
            raise pickle.UnpicklingError("unsupported storage view")
        return _Storage(key, root.dtype, view[2], view_offset=view[1])


def _materialise(ref: _TensorRef, root_data: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    start = ref.storage.view_offset + ref.offset
    if 0 in ref.size:
        return np.zeros(ref.size, np.float32)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    # as_strided reads whatever memory it is told to: bounds come first
    if last >= min(root_data.shape[0], ref.storage.view_offset + ref.storage.numel):
        raise WeightsError("a tensor reaches past the end of its storage")
    item = root_data.itemsize
    view = np.lib.stride_tricks.as_strided(
        root_data[start:],
        shape=ref.size,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=np.float32)


def read_torch_state_dict(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    """The float32 tensors of a torch checkpoint, by name, read without torch.

    Accepts both of torch.save's formats (the zip archive of torch >= 1.6 and
    the legacy pickle stream Resemblyzer's weights use), and either a bare state
    dict or a training checkpoint holding one under ``model_state``. ``file``
    must be seekable.
    """
    start = file.tell()
    is_zip = zipfile.is_zipfile(file)
    file.seek(start)
    try:
        return _read_zip(file) if is_zip else _read_legacy(file)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"unsafe or unreadable checkpoint: {exc}") from exc
    except Exception as exc:
        # Whatever a damaged or hostile file makes the parser trip over.
        raise WeightsError(f"damaged checkpoint: {type(exc).__name__}: {exc}") from exc


def _tensor_refs(obj: object) -> dict[str, _TensorRef]:
    state = obj.get("model_state", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise WeightsError("the checkpoint holds no state dict")
    refs = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, _TensorRef)}
    if not refs:
        raise WeightsError("the checkpoint's state dict holds no tensors")
    return refs


def _read_legacy(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    if RestrictedUnpickler(file).load() != _LEGACY_MAGIC:
        raise WeightsError("not a torch checkpoint (wrong magic number)")
    if RestrictedUnpickler(file).load() != _LEGACY_PROTOCOL:
        raise WeightsError("unsupported legacy torch checkpoint version")
    sys_info = RestrictedUnpickler(file).load()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise WeightsError("only little-endian checkpoints are supported")
    storages: dict[str, _Storage] = {}
    refs = _tensor_refs(RestrictedUnpickler(file, storages).load())
    keys = RestrictedUnpickler(file).load()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise WeightsError("the checkpoint's storage list does not match its tensors")
    wanted = {ref.storage.key for ref in refs.values()}
    data: dict[str, npt.NDArray[Any]] = {}
    for key in keys:
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8 or int.from_bytes(header, "little", signed=True) != storage.numel:
            raise WeightsError(f"storage {key} has the wrong size")
        nbytes = storage.numel * storage.dtype.itemsize
        if key not in wanted:
            # optimizer state and the like: not needed for inference
            file.seek(nbytes, io.SEEK_CUR)
            continue
        raw = file.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsError(f"storage {key} is truncated")
        data[key] = np.frombuffer(raw, dtype=storage.dtype)
    return {name: _materialise(ref, data[ref.storage.key]) for name, ref in refs.items()}


def _read_zip(file: IO[bytes]) -> dict[str, npt.NDArray[np.float32]]:
    with zipfile.ZipFile(file) as archive:
        pickles = [n for n in archive.namelist() if PurePosixPath(n).name == "data.pkl"]
        if len(pickles) != 1 or len(PurePosixPath(pickles[0]).parts) != 2:
            raise WeightsError("not a torch checkpoint archive")
        prefix = PurePosixPath(pickles[0]).parent
        byteorder = prefix / "byteorder"
        if str(byteorder) in archive.namelist() and archive.read(str(byteorder)) != b"little":
            raise WeightsError("only little-endian checkpoints are supported")
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as stream:
            refs = _tensor_refs(RestrictedUnpickler(stream, storages).load())
        data: dict[str, npt.NDArray[Any]] = {}
        for key in {ref.storage.key for ref in refs.values()}:
            if PurePosixPath(key).name != key or key in (".", ".."):
                raise WeightsError(f"bad storage key {key!r}")
            storage = storages[key]
            raw = archive.read(str(prefix / "data" / key))
            if len(raw) != storage.numel * storage.dtype.itemsize:
                raise WeightsError(f"storage {key} has the wrong size")
            data[key] = np.frombuffer(raw, dtype=storage.dtype)
    return {name: _materialise(ref, data[ref.storage.key]) for name, ref in refs.items()}
