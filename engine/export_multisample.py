"""Bitwig ``.multisample`` export: a zip of ``multisample.xml`` and the pack's WAVs.

The zip (stored, not compressed: PCM barely shrinks) holds the WAVs at its top level beside
``multisample.xml``: ``<multisample name=…>`` with ``generator``, empty ``category``, ``creator``,
``description`` and ``keywords``, and one ``<layer name="Default">`` with a ``<sample>`` per key:
``sample-start``/``sample-stop`` (the whole file, in sample frames), ``<key root low high>`` (the
same ranges as the SFZ, ``track`` 1), ``<velocity low="0" high="127">`` and
``<loop mode="sustain" start stop>`` where ``stop`` is the frame after the loop's last one
(KeySample's exclusive ``loop_end``).

Velocity layers set ``<velocity low high>``; the round robins of a key and layer (same key and
velocity ranges) get ``zone-logic="round-robin"`` (the format's other value besides
``always-play``), so Bitwig cycles them.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


def multisample_xml(zones_: Sequence, name: str) -> str:
    """``multisample.xml`` for ``zones_`` (engine.export.Zone); samples named by their WAV file name."""
    root = ET.Element("multisample", name=name)
    ET.SubElement(root, "generator").text = "HyperGANStrument"
    for tag in ("category", "creator", "description", "keywords"):
        ET.SubElement(root, tag)
    layer = ET.SubElement(root, "layer", name="Default")
    for z in zones_:
        k = z.key
        sample = ET.SubElement(layer, "sample", {
            "file": PurePosixPath(z.wav).name, "sample-start": "0.000", "sample-stop": f"{len(k.samples)}.000",
            "gain": "0.00", "zone-logic": "round-robin" if z.seq_length > 1 else "always-play"})
        ET.SubElement(sample, "key", root=str(k.root_note), low=str(z.lokey), high=str(z.hikey),
                      **{"low-fade": "0", "high-fade": "0", "track": "1.0000", "tune": "0.0"})
        ET.SubElement(sample, "velocity", low=str(z.lovel), high=str(z.hivel))
        ET.SubElement(sample, "loop", mode="sustain", start=f"{k.loop_start}.000", stop=f"{k.loop_end}.000",
                      fade="0.0000")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_multisample(path: Path, pack: Path, zones_: Sequence, name: str) -> None:
    """Zip ``multisample.xml`` and the zones' WAVs (already written under ``pack``) into ``path``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("multisample.xml", multisample_xml(zones_, name))
        for wav in dict.fromkeys(z.wav for z in zones_):   # a sample serving several zones: once
            zf.write(pack / wav, arcname=PurePosixPath(wav).name)
