"""Per-sample results (h, h_init, the hypernetwork's offsets) kept so a second render skips f and H.

An in-memory LRU bounded by bytes, optionally backed by a folder of ``.safetensors`` files. Entries
are plain ``dict[str, Tensor]``; keys are strings built by the engine from audio content hashes.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from models.checkpoint import read_tensors, save_tensors
from models.errors import CheckpointError

Entry = dict[str, torch.Tensor]


def entry_bytes(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry.values())


class TensorCache:
    """Thread-safe LRU of tensor dicts, at most ``max_bytes`` in memory.

    With ``disk_dir`` set, :meth:`put` with ``persist=True`` also writes the entry to
    ``disk_dir/<sha1 of key>.safetensors`` and :meth:`get` falls back to it; a damaged file is
    dropped and counted as a miss. ``disk_dir`` should name the model (the engine uses a hash of
    the weights) so entries of other weights never apply.
    """

    def __init__(self, max_bytes: int = 256 << 20, disk_dir: str | Path | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.max_bytes = int(max_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.device = torch.device(device)
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / (hashlib.sha1(key.encode()).hexdigest() + ".safetensors")

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return entry
        entry = self._read_disk(key)
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.disk_hits += 1
        self._insert(key, entry)
        return entry

    def put(self, key: str, entry: Entry, persist: bool = False) -> None:
        entry = {k: v.detach() for k, v in entry.items()}
        self._insert(key, entry)
        if persist and self.disk_dir is not None:
            try:
                save_tensors(self._path(key), entry, {"cache_key": key})
            except OSError:
                pass  # a full or read-only cache folder only costs speed

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _insert(self, key: str, entry: Entry) -> None:
        size = entry_bytes(entry)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= entry_bytes(old)
            if size > self.max_bytes:
                return
            self._items[key] = entry
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= entry_bytes(evicted)

    def _read_disk(self, key: str) -> Entry | None:
        if self.disk_dir is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors, meta = read_tensors(path, device=self.device)
        except CheckpointError:
            path.unlink(missing_ok=True)
            return None
        if meta.get("cache_key") != key:  # a hash collision or a foreign file
            return None
        return tensors
