#!/usr/bin/env python3
"""Generate the image-decoding fixtures: what Pillow 13.0.0 gives a transformers user.

What it makes
-------------
Everything under ``datasets/tests/fixtures/pillow/`` (that folder, and only that
folder, is deleted and recreated on every run):

* one sub-folder per family (``jpeg/ webp/ png/ gif/ bmp/ tiff/ hostile/``)
  holding small image files made by this script, by Pillow's own encoders, by
  tools of Debian 12 (``cjpeg``/``jpegtran`` from libjpeg-turbo-progs,
  ``tiffcp`` from libtiff-tools, ``cwebp``/``webpmux`` from webp), by
  ``tifffile``/``imagecodecs``, or written byte by byte here (BMP, GIF, PNG and
  TIFF writers below) where no encoder makes the variant;
* ``NAME.rgb`` next to an image for the small ones (at most 64x64 pixels after
  EXIF transposition) and for a few chosen photo JPEGs: the H*W*3 RGB bytes,
  row-major, exactly what ``arr.tobytes()`` gives below;
* ``manifest.json``: versions, library versions, source-photo hashes and one
  entry per image file (one line each);
* ``README.md``: one line per family, plus the Pillow behaviours the files pin down.

The truth recorded for every file is "what a transformers user gets"::

    from PIL import Image, ImageOps
    from transformers.image_transforms import convert_to_rgb
    im = Image.open(path); im.load()          # Pillow opens the first frame
    im = ImageOps.exif_transpose(im)
    arr = convert_to_rgb(im, return_numpy=True)   # HxWx3 uint8

``convert_to_rgb`` (transformers 5.23.0) composites on white when the image has
an "A" band or ``info["transparency"]``, else it is ``im.convert("RGB")``.
Manifest entry fields: ``file``, ``format`` (the family; in hostile/ the format
the extension claims), ``case``, ``opens``; when it opens: ``pillow_format``,
``mode`` (right after open), ``size`` ([w, h] after exif_transpose),
``orientation`` (``getexif()[0x0112]`` on a fresh instance before loading, EXIF
or the XMP fallback, else null), ``frames``, ``alpha_composited``
(convert_to_rgb took the white-compositing path), ``sha256`` (of the RGB bytes),
``raw`` (the .rgb file or null), and only where they apply:
``load_image_sha256`` (``transformers.image_utils.load_image`` is exif_transpose
+ ``convert("RGB")`` with no compositing, and gives these other bytes),
``bytesio_size``/``bytesio_sha256``/``bytesio_error`` (the same pipeline on
``Image.open(BytesIO(data))`` differs: Pillow memory-maps some uncompressed
files opened by path), ``warnings``; when it does not open: ``stage`` (open,
load, exif_transpose or convert_to_rgb) and ``error`` ("ExceptionType: message",
paths relative to the pillow/ folder).

Photographs come from scikit-image's bundled sample data (files shipped inside
the scikit-image wheel; no network), cropped with ``ImageOps.fit`` and
Lanczos-resized to small odd sizes. Their sha256 is recorded in the manifest.
Every hand-written variant was checked to decode (where Pillow decodes it) to
the same pixels as its plain counterpart.

How to run
----------
::

    python3 -m venv /work/venvs/img
    /work/venvs/img/bin/pip install pillow==13.0.0 numpy==2.4.6 transformers==5.23.0 \
        scikit-image==0.26.0 tifffile==2026.3.3 imagecodecs==2026.3.6   # pins in requirements-fixtures.txt
    apt-get install libjpeg-turbo-progs libtiff-tools webp
    /work/venvs/img/bin/python scripts/make_image_fixtures.py

Versions used: Pillow 13.0.0 (its bundled libjpeg-turbo 3.2.0, libtiff 4.7.2,
libwebp 1.6.0, zlib-ng), numpy 2.4.6, transformers 5.23.0 (no torch needed),
scikit-image 0.26.0, tifffile 2026.3.3, imagecodecs 2026.3.6; Debian 12 tools
libjpeg-turbo-progs 2.1.5, libtiff-tools 4.5.0, webp 1.2.4.

Deterministic: two runs give byte-identical output (checked by running twice
and diffing). Files compressed with Python's own ``zlib`` (the hand-written PNGs
and the "Raw profile" chunk) depend on the system zlib; their pixels do not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, features, PngImagePlugin

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "datasets" / "tests" / "fixtures" / "pillow"
ALLOWED_EXT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tiff", ".tif"}
RAW_MAX_PIXELS = 64 * 64
EXPECTED = {"pillow": "13.0.0", "numpy": "2.4.6", "transformers": "5.23.0"}

# ----------------------------------------------------------------------------
# plumbing


class Fixtures:
    def __init__(self) -> None:
        self.items: list[dict] = []
        self.names: set[str] = set()

    def add(self, rel: str, data: bytes, case: str, raw: bool | None = None) -> None:
        """Write one image file. raw=None: write .rgb when small; True: always; False: never."""
        path = OUT / rel
        if path.suffix.lower() not in ALLOWED_EXT:
            raise ValueError(f"extension not allowed: {rel}")
        stem_key = str(path.with_suffix("")).lower()
        if rel in self.names or stem_key in self.names:
            raise ValueError(f"duplicate name: {rel}")
        self.names.update({rel, stem_key})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        family = rel.split("/")[0]
        fmt = FAMILY_FORMAT.get(family) or EXT_FORMAT[path.suffix.lower()]
        self.items.append({"file": rel, "format": fmt, "case": case, "raw": raw})


FX = Fixtures()
FAMILY_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}
EXT_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP",
              ".tif": "TIFF", ".tiff": "TIFF"}


def sh(cmd: list[str], data: bytes | None = None) -> bytes:
    """Run a tool, feed it data on stdin, return stdout."""
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p.stdout


def tool_file(cmd_fn, suffix_in: str, data: bytes, suffix_out: str) -> bytes:
    """For tools that want file names: cmd_fn(in_path, out_path) -> argv."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in" + suffix_in)
        dst = os.path.join(d, "out" + suffix_out)
        with open(src, "wb") as f:
            f.write(data)
        sh(cmd_fn(src, dst))
        with open(dst, "rb") as f:
            return f.read()


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------
# sources


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-image is needed for its bundled sample photos (pip install scikit-image==0.26.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


SOURCES = {
    "chelsea": "chelsea.png",  # cat, 451x300 RGB
    "coffee": "coffee.png",  # cup of coffee, 600x400 RGB
    "astronaut": "astronaut.png",  # portrait, 512x512 RGB
    "ihc": "ihc.png",  # immunohistochemistry slide, 512x512 RGB
    "camera": "camera.png",  # cameraman, 512x512 L
    "moon": "moon.png",  # moon surface, 512x512 L
    "rocket": "rocket.jpg",  # launch photo, 640x427 (decoded by Pillow itself)
}
_SRC_CACHE: dict[str, Image.Image] = {}


def source(name: str) -> Image.Image:
    if name not in _SRC_CACHE:
        im = Image.open(skimage_data_dir() / SOURCES[name])
        im.load()
        _SRC_CACHE[name] = im
    return _SRC_CACHE[name]


def photo(name: str, w: int, h: int, mode: str = "RGB") -> Image.Image:
    """Center-crop a bundled photo to the aspect of w x h and Lanczos-resize it."""
    im = source(name).convert(mode)
    out = ImageOps.fit(im, (w, h), Image.Resampling.LANCZOS)
    out.info = {}  # drop the source's ICC profile etc.; metadata is added explicitly where wanted
    return out


def alpha_mask(w: int, h: int) -> np.ndarray:
    """Soft ellipse: opaque centre, fully transparent corners, a ramp between (uint8 HxW)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    r = np.sqrt(((x - cx) / max(w / 2, 0.5)) ** 2 + ((y - cy) / max(h / 2, 0.5)) ** 2)
    a = np.clip((1.15 - r) / 0.5, 0, 1) * 255
    a = np.round(a).astype(np.uint8)
    a[0, 0] = 0
    if w > 2:
        a[0, 1] = 1
    if w > 3:
        a[0, 2] = 128
    return a


def photo_rgba(name: str, w: int, h: int) -> Image.Image:
    im = photo(name, w, h)
    arr = np.dstack([np.asarray(im), alpha_mask(w, h)])
    return Image.fromarray(arr, "RGBA")


def ramp(w: int, h: int, levels: int = 256) -> np.ndarray:
    """Diagonal ramp plus a checker, values 0..levels-1 (uint16 HxW)."""
    y, x = np.mgrid[0:h, 0:w]
    v = (x * (levels - 1) // max(w - 1, 1) + y * 7 + ((x // 3 + y // 3) % 2) * (levels // 5)) % levels
    return v.astype(np.uint16)


def rgb_pattern(w: int, h: int) -> np.ndarray:
    """Colourful synthetic RGB (uint8 HxWx3)."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    b = (((x + 2 * y) * 37) % 256).astype(np.uint8)
    return np.dstack([r, g, b])


def exif_bytes(orientation: int | None = None, big_endian: bool = False, extra: dict | None = None) -> bytes:
    """A TIFF-structured EXIF block (without the "Exif\\0\\0" prefix)."""
    tags = {}
    if orientation is not None:
        tags[0x0112] = (3, [orientation])
    tags[0x0131] = (2, b"fixture\x00")
    if extra:
        tags.update(extra)
    return tiff_ifd_block(tags, ">" if big_endian else "<")


def tiff_ifd_block(tags: dict, e: str) -> bytes:
    """A TIFF header + one IFD holding `tags` {tag: (type, values|bytes)} (no strips)."""
    body = bytearray((b"MM\x00*" if e == ">" else b"II*\x00") + struct.pack(e + "I", 8))
    n = len(tags)
    ifd_end = 8 + 2 + 12 * n + 4
    extra = bytearray()
    entries = bytearray(struct.pack(e + "H", n))
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}
    for tag in sorted(tags):
        typ, vals = tags[tag]
        if isinstance(vals, (bytes, bytearray)):
            data = bytes(vals)
            count = len(data)
        else:
            fmt = {1: "B", 3: "H", 4: "I"}[typ]
            data = struct.pack(e + fmt * len(vals), *vals)
            count = len(vals)
        if len(data) <= 4:
            field = data.ljust(4, b"\x00")
        else:
            field = struct.pack(e + "I", ifd_end + len(extra))
            extra += data + (b"\x00" if len(data) % 2 else b"")
        assert sizes[typ] * count == len(data)
        entries += struct.pack(e + "HHI", tag, typ, count) + field
    entries += struct.pack(e + "I", 0)
    return bytes(body + entries + extra)


def xmp_packet(orientation: int, element_form: bool = False) -> bytes:
    if element_form:
        desc = (
            '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/">'
            f"<tiff:Orientation>{orientation}</tiff:Orientation></rdf:Description>"
        )
    else:
        desc = (
            '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
            f'tiff:Orientation="{orientation}"/>'
        )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f"{desc}</rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
    ).encode()


def srgb_icc() -> bytes:
    """The sRGB IEC61966-2.1 profile embedded in astronaut.png (a created profile would carry today's date)."""
    return source("astronaut").info["icc_profile"]


def ppm(im: Image.Image) -> bytes:
    return pil_bytes(im, "PPM")


def truncate(data: bytes, frac: float) -> bytes:
    return data[: max(1, int(len(data) * frac))]


# ----------------------------------------------------------------------------
# JPEG


def cjpeg(im: Image.Image, *args: str) -> bytes:
    return sh(["cjpeg", *args], ppm(im))


def jpeg_insert_before_marker(data: bytes, marker: int, junk: bytes) -> bytes:
    """Insert junk right before the first occurrence of marker (0xFFxx) in the header."""
    i = 2
    while i < len(data):
        assert data[i] == 0xFF, "walked off the marker chain"
        m = data[i + 1]
        if m == marker:
            return data[:i] + junk + data[i:]
        seglen = struct.unpack(">H", data[i + 2 : i + 4])[0]
        i += 2 + seglen
    raise ValueError("marker not found")


def jpeg_strip_segment(data: bytes, marker: int) -> bytes:
    """Remove every header segment with the given marker (e.g. 0xEE = APP14 "Adobe")."""
    out = bytearray(data[:2])
    i = 2
    while i < len(data):
        m = data[i + 1]
        if m == 0xDA:
            out += data[i:]
            break
        seglen = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if m != marker:
            out += data[i : i + 2 + seglen]
        i += 2 + seglen
    return bytes(out)


def jpeg_family() -> None:
    A = "jpeg/"
    big = photo("chelsea", 301, 217)
    mid = photo("chelsea", 93, 171)
    # subsampling matrix: 301x217 (4:2:0 carries raw) and 93x171 (all five carry raw)
    FX.add(A + "photo_420_q90_301x217.jpg", pil_bytes(big, "JPEG", quality=90, subsampling=2),
           "Pillow baseline 4:2:0 q90", raw=True)
    FX.add(A + "photo_444_q90_301x217.jpg", pil_bytes(big, "JPEG", quality=90, subsampling=0),
           "Pillow baseline 4:4:4 q90")
    FX.add(A + "photo_422_q90_301x217.jpg", pil_bytes(big, "JPEG", quality=90, subsampling=1),
           "Pillow baseline 4:2:2 q90")
    FX.add(A + "photo_440_q90_301x217.jpg", cjpeg(big, "-quality", "90", "-sample", "1x2,1x1,1x1"),
           "cjpeg 4:4:0 (-sample 1x2) q90")
    FX.add(A + "photo_411_q90_301x217.jpg", cjpeg(big, "-quality", "90", "-sample", "4x1,1x1,1x1"),
           "cjpeg 4:1:1 (-sample 4x1) q90")
    FX.add(A + "photo_444_q90_93x171.jpg", pil_bytes(mid, "JPEG", quality=90, subsampling=0),
           "Pillow baseline 4:4:4 q90", raw=True)
    FX.add(A + "photo_422_q90_93x171.jpg", pil_bytes(mid, "JPEG", quality=90, subsampling=1),
           "Pillow baseline 4:2:2 q90", raw=True)
    FX.add(A + "photo_420_q90_93x171.jpg", pil_bytes(mid, "JPEG", quality=90, subsampling=2),
           "Pillow baseline 4:2:0 q90", raw=True)
    FX.add(A + "photo_440_q90_93x171.jpg", cjpeg(mid, "-quality", "90", "-sample", "1x2,1x1,1x1"),
           "cjpeg 4:4:0 (-sample 1x2) q90", raw=True)
    FX.add(A + "photo_411_q90_93x171.jpg", cjpeg(mid, "-quality", "90", "-sample", "4x1,1x1,1x1"),
           "cjpeg 4:1:1 (-sample 4x1) q90", raw=True)
    FX.add(A + "photo_410_q90_93x171.jpg", cjpeg(mid, "-quality", "90", "-sample", "4x2,1x1,1x1"),
           "cjpeg 4:1:0 (-sample 4x2) q90")
    FX.add(A + "photo_mixed_2x2_1x2_93x171.jpg", cjpeg(mid, "-quality", "90", "-sample", "2x2,1x2,1x1"),
           "cjpeg unusual per-component sampling 2x2,1x2,1x1 (Cb 4:2:2, Cr 4:2:0)")
    FX.add(A + "photo_mixed_1x1_2x2_93x171.jpg", cjpeg(mid, "-quality", "90", "-sample", "1x1,2x2,1x1"),
           "cjpeg luma NOT the most sampled: 1x1,2x2,1x1 (Cb at twice the luma resolution)")
    FX.add(A + "photo_cjpeg_420_301x217.jpg", cjpeg(big, "-quality", "90"), "cjpeg default 4:2:0 q90")
    FX.add(A + "photo_420_q50_301x217.jpg", pil_bytes(big, "JPEG", quality=50, subsampling=2), "Pillow baseline 4:2:0 q50")
    FX.add(A + "photo_420_q100_93x171.jpg", pil_bytes(mid, "JPEG", quality=100, subsampling=2), "Pillow baseline 4:2:0 q100")
    FX.add(A + "photo_444_q100_93x171.jpg", pil_bytes(mid, "JPEG", quality=100, subsampling=0), "Pillow baseline 4:4:4 q100")
    FX.add(A + "photo_progressive_420_93x171.jpg",
           pil_bytes(mid, "JPEG", quality=85, subsampling=2, progressive=True), "Pillow progressive 4:2:0")
    FX.add(A + "photo_progressive_444_93x171.jpg",
           pil_bytes(mid, "JPEG", quality=85, subsampling=0, progressive=True), "Pillow progressive 4:4:4")
    FX.add(A + "photo_optimize_420_93x171.jpg",
           pil_bytes(mid, "JPEG", quality=85, subsampling=2, optimize=True), "Pillow optimized Huffman 4:2:0")
    FX.add(A + "photo_cjpeg_progressive_422_93x171.jpg",
           cjpeg(mid, "-quality", "85", "-progressive", "-sample", "2x1,1x1,1x1"), "cjpeg progressive 4:2:2")
    FX.add(A + "photo_cjpeg_progressive_411_93x171.jpg",
           cjpeg(mid, "-quality", "85", "-progressive", "-sample", "4x1,1x1,1x1"), "cjpeg progressive 4:1:1")
    FX.add(A + "photo_arithmetic_420_93x171.jpg", cjpeg(mid, "-quality", "85", "-arithmetic"),
           "cjpeg arithmetic coding 4:2:0")
    FX.add(A + "photo_arithmetic_progressive_444_93x171.jpg",
           cjpeg(mid, "-quality", "85", "-arithmetic", "-progressive", "-sample", "1x1,1x1,1x1"),
           "cjpeg arithmetic progressive 4:4:4")
    FX.add(A + "photo_restart_1row_420_93x171.jpg", cjpeg(mid, "-quality", "85", "-restart", "1"),
           "cjpeg restart interval 1 MCU row")
    FX.add(A + "photo_restart_3blocks_422_93x171.jpg",
           cjpeg(mid, "-quality", "85", "-restart", "3B", "-sample", "2x1,1x1,1x1"),
           "cjpeg restart interval 3 MCUs, 4:2:2")
    FX.add(A + "photo_restart_1block_progressive_93x171.jpg",
           cjpeg(mid, "-quality", "85", "-restart", "1B", "-progressive"),
           "cjpeg progressive with a restart marker after every MCU")
    FX.add(A + "photo_pillow_restart_rows_444_93x171.jpg",
           pil_bytes(mid, "JPEG", quality=80, subsampling=0, restart_marker_rows=2),
           "Pillow restart_marker_rows=2, 4:4:4")
    FX.add(A + "photo_rgb_colorspace_cjpeg_93x171.jpg", cjpeg(mid, "-quality", "90", "-rgb"),
           "cjpeg -rgb: RGB components, Adobe transform 0, no JFIF")
    FX.add(A + "photo_rgb_colorspace_keep_rgb_93x171.jpg",
           pil_bytes(mid, "JPEG", quality=90, keep_rgb=True, subsampling=0),
           "Pillow keep_rgb=True (RGB components)")
    FX.add(A + "photo_jpegtran_progressive_from_420_93x171.jpg",
           sh(["jpegtran", "-progressive", "-copy", "none"], pil_bytes(mid, "JPEG", quality=90)),
           "jpegtran lossless conversion of a baseline 4:2:0 to progressive")
    # grayscale
    FX.add(A + "gray_pillow_93x171.jpg", pil_bytes(photo("camera", 93, 171, "L"), "JPEG", quality=90),
           "Pillow grayscale (mode L)")
    FX.add(A + "gray_cjpeg_from_color_93x171.jpg",
           cjpeg(photo("chelsea", 93, 171), "-grayscale", "-quality", "90"), "cjpeg -grayscale from colour input")
    FX.add(A + "gray_progressive_17x9.jpg",
           pil_bytes(photo("camera", 17, 9, "L"), "JPEG", quality=90, progressive=True), "grayscale progressive, odd size")
    # CMYK / YCCK
    cmyk_src = photo("coffee", 93, 71)
    FX.add(A + "cmyk_pillow_93x71.jpg", pil_bytes(cmyk_src.convert("CMYK"), "JPEG", quality=90),
           "Pillow CMYK JPEG (Adobe marker, inverted CMYK as Pillow writes it)")
    cmyk_arr = np.asarray(cmyk_src.convert("CMYK"))
    try:
        import imagecodecs

        FX.add(A + "ycck_adobe_93x71.jpg",
               imagecodecs.jpeg8_encode(255 - cmyk_arr, level=90, colorspace="CMYK", outcolorspace="YCCK"),
               "libjpeg-turbo (imagecodecs) YCCK with Adobe marker transform 2, Adobe-inverted CMYK input")
        FX.add(A + "cmyk_adobe_imagecodecs_93x71.jpg",
               imagecodecs.jpeg8_encode(255 - cmyk_arr, level=90, colorspace="CMYK", outcolorspace="CMYK"),
               "libjpeg-turbo (imagecodecs) CMYK, Adobe transform 0, Adobe-inverted CMYK input")
        FX.add(A + "cmyk_no_adobe_marker_93x71.jpg",
               jpeg_strip_segment(imagecodecs.jpeg8_encode(255 - cmyk_arr, level=90, colorspace="CMYK",
                                                           outcolorspace="CMYK"), 0xEE),
               "4-component CMYK JPEG with the Adobe APP14 segment removed")
        FX.add(A + "ycck_adobe_marker_stripped_93x71.jpg",
               jpeg_strip_segment(imagecodecs.jpeg8_encode(255 - cmyk_arr, level=90, colorspace="CMYK",
                                                           outcolorspace="YCCK"), 0xEE),
               "YCCK-encoded JPEG whose Adobe segment was removed (decoder cannot know it is YCCK)")
        FX.add(A + "lossless_sof3_rgb_33x21.jpg",
               imagecodecs.jpeg8_encode(np.asarray(photo("chelsea", 33, 21)), lossless=True, predictor=1),
               "lossless JPEG (SOF3, predictor 1)")
        FX.add(A + "twelve_bit_gray_33x21.jpg",
               imagecodecs.jpeg8_encode((ramp(33, 21, 4096)).astype(np.uint16), level=90, bitspersample=12),
               "12-bit precision JPEG (SOF1), grayscale")
    except ImportError:
        sys.exit("imagecodecs is needed (pip install imagecodecs==2026.3.6)")
    # odd sizes x subsampling (small ones carry raw)
    samp = {"444": "1x1,1x1,1x1", "422": "2x1,1x1,1x1", "420": "2x2,1x1,1x1", "440": "1x2,1x1,1x1",
            "411": "4x1,1x1,1x1"}
    for (w, h) in [(17, 9), (33, 1), (1, 33), (1, 1), (2, 2), (63, 47)]:
        src = photo("chelsea", w, h)
        for key, s in samp.items():
            FX.add(A + f"photo_{key}_{w}x{h}.jpg", cjpeg(src, "-quality", "90", "-sample", s),
                   f"cjpeg {key[0]}:{key[1]}:{key[2]}, odd size {w}x{h}")
    FX.add(A + "rocket_422_93x171.jpg", pil_bytes(photo("rocket", 93, 171), "JPEG", quality=90, subsampling=1),
           "Pillow 4:2:2 93x171 (rocket photo)")
    FX.add(A + "photo_444_64x48.jpg", pil_bytes(photo("astronaut", 64, 48), "JPEG", quality=95, subsampling=0),
           "Pillow 4:4:4 64x48")
    # EXIF orientation 1..8 on a non-square photo
    o = photo("chelsea", 61, 43)
    for n in range(1, 9):
        FX.add(A + f"orientation_{n}_61x43.jpg",
               pil_bytes(o, "JPEG", quality=90, exif=b"Exif\x00\x00" + exif_bytes(n)),
               f"EXIF Orientation={n} (little-endian EXIF)")
    FX.add(A + "orientation_6_bigendian_exif_61x43.jpg",
           pil_bytes(o, "JPEG", quality=90, exif=b"Exif\x00\x00" + exif_bytes(6, big_endian=True)),
           "EXIF Orientation=6 in a big-endian (MM) EXIF block")
    for n in (0, 9):
        FX.add(A + f"orientation_invalid_{n}_61x43.jpg",
               pil_bytes(o, "JPEG", quality=90, exif=b"Exif\x00\x00" + exif_bytes(n)),
               f"EXIF Orientation={n} (out of range: no transpose)")
    FX.add(A + "xmp_orientation_6_attr_61x43.jpg", pil_bytes(o, "JPEG", quality=90, xmp=xmp_packet(6)),
           'XMP tiff:Orientation="6" attribute, no EXIF')
    FX.add(A + "xmp_orientation_8_element_61x43.jpg",
           pil_bytes(o, "JPEG", quality=90, xmp=xmp_packet(8, element_form=True)),
           "XMP <tiff:Orientation>8</tiff:Orientation> element, no EXIF")
    FX.add(A + "exif1_xmp6_61x43.jpg",
           pil_bytes(o, "JPEG", quality=90, exif=b"Exif\x00\x00" + exif_bytes(1), xmp=xmp_packet(6)),
           "EXIF Orientation=1 plus XMP Orientation=6 (EXIF wins)")
    FX.add(A + "exif_no_orientation_xmp3_61x43.jpg",
           pil_bytes(o, "JPEG", quality=90, exif=b"Exif\x00\x00" + exif_bytes(None), xmp=xmp_packet(3)),
           "EXIF without Orientation plus XMP Orientation=3 (XMP used)")
    FX.add(A + "orientation_5_progressive_422_61x43.jpg",
           pil_bytes(o, "JPEG", quality=90, subsampling=1, progressive=True, exif=b"Exif\x00\x00" + exif_bytes(5)),
           "EXIF Orientation=5 on a progressive 4:2:2")
    # ICC, comment, MPO
    FX.add(A + "icc_srgb_61x43.jpg", pil_bytes(o, "JPEG", quality=90, icc_profile=srgb_icc()),
           "embedded sRGB ICC profile (Pillow does not apply ICC)")
    FX.add(A + "comment_61x43.jpg", pil_bytes(o, "JPEG", quality=90, comment=b"a COM segment"), "COM marker")
    mpo = pil_bytes(o, "MPO", quality=90, save_all=True, append_images=[photo("coffee", 61, 43)])
    FX.add(A + "mpo_two_frames_61x43.jpg", mpo, "MPO (multi-picture JPEG), first frame")
    # damaged but decodable / refused
    base = pil_bytes(photo("chelsea", 93, 71), "JPEG", quality=90)
    FX.add(A + "extraneous_bytes_before_sof_93x71.jpg",
           jpeg_insert_before_marker(base, 0xC0, b"\x00\x13\x37\x42\x00"),
           "5 extraneous bytes before SOF0 (libjpeg warns, Pillow decodes)")
    FX.add(A + "extraneous_bytes_before_sos_93x71.jpg",
           jpeg_insert_before_marker(base, 0xDA, b"\x12\x34"),
           "2 extraneous bytes before SOS")
    FX.add(A + "trailing_garbage_93x71.jpg", base + b"\x00garbage after EOI" * 4, "bytes after EOI")
    assert base.endswith(b"\xff\xd9")
    FX.add(A + "no_eoi_93x71.jpg", base[:-2], "EOI marker missing (scan data complete)")
    FX.add(A + "truncated_half_93x71.jpg", truncate(base, 0.5), "truncated in the middle of the scan")
    FX.add(A + "truncated_90pct_progressive_93x71.jpg",
           truncate(pil_bytes(photo("chelsea", 93, 71), "JPEG", quality=90, progressive=True), 0.9),
           "progressive, truncated at 90%")
    sos = base.index(b"\xff\xda")
    FX.add(A + "truncated_at_sos_93x71.jpg", base[:sos], "header complete, no scan (cut before SOS)")
    FX.add(A + "truncated_after_soi.jpg", base[:2], "only SOI")
    FX.add(A + "truncated_header_93x71.jpg", base[:40], "cut inside the header segments")


# ----------------------------------------------------------------------------
# WebP


def webp_family() -> None:
    A = "webp/"
    big = photo("coffee", 301, 217)
    mid = photo("coffee", 93, 171)
    FX.add(A + "lossy_q90_301x217.webp", pil_bytes(big, "WEBP", quality=90), "Pillow lossy q90")
    FX.add(A + "lossless_93x171.webp", pil_bytes(mid, "WEBP", lossless=True), "Pillow lossless RGB")
    FX.add(A + "lossy_q50_93x171.webp", pil_bytes(mid, "WEBP", quality=50), "Pillow lossy q50", raw=True)
    FX.add(A + "lossy_q90_93x171.webp", pil_bytes(mid, "WEBP", quality=90), "Pillow lossy q90", raw=True)
    FX.add(A + "lossy_cwebp_q75_93x171.webp",
           tool_file(lambda s, d: ["cwebp", "-quiet", "-q", "75", s, "-o", d], ".ppm",
                     ppm(photo("coffee", 93, 171)), ".webp"),
           "cwebp (libwebp 1.2.4) lossy q75, simple VP8 file")
    FX.add(A + "lossy_cwebp_sharp_yuv_93x171.webp",
           tool_file(lambda s, d: ["cwebp", "-quiet", "-q", "80", "-sharp_yuv", s, "-o", d], ".ppm",
                     ppm(photo("astronaut", 93, 171)), ".webp"), "cwebp -sharp_yuv lossy")
    rgba = photo_rgba("coffee", 93, 71)
    FX.add(A + "lossy_alpha_93x71.webp", pil_bytes(rgba, "WEBP", quality=80), "Pillow lossy RGB + lossless alpha (VP8X+ALPH)")
    FX.add(A + "lossy_alpha_q50_alphaq30_93x71.webp", pil_bytes(rgba, "WEBP", quality=50, alpha_quality=30),
           "Pillow lossy with lossy-quantised alpha (alpha_quality=30)")
    FX.add(A + "lossless_alpha_93x71.webp", pil_bytes(rgba, "WEBP", lossless=True), "Pillow lossless RGBA")
    FX.add(A + "lossless_alpha_exact_cwebp_33x21.webp",
           tool_file(lambda s, d: ["cwebp", "-quiet", "-lossless", "-exact", s, "-o", d], ".png",
                     pil_bytes(photo_rgba("coffee", 33, 21), "PNG"), ".webp"),
           "cwebp -lossless -exact: RGB kept under transparent pixels (load_image differs)")
    o = photo("coffee", 61, 43)
    for n in (3, 6):
        FX.add(A + f"orientation_{n}_lossy_61x43.webp",
               pil_bytes(o, "WEBP", quality=90, exif=b"Exif\x00\x00" + exif_bytes(n)), f"EXIF Orientation={n}, lossy")
    FX.add(A + "orientation_8_lossless_61x43.webp",
           pil_bytes(o, "WEBP", lossless=True, exif=exif_bytes(8)), "EXIF Orientation=8 (no Exif prefix), lossless")
    FX.add(A + "xmp_orientation_6_61x43.webp", pil_bytes(o, "WEBP", quality=90, xmp=xmp_packet(6)),
           "XMP tiff:Orientation=6, no EXIF")
    # animations
    frames = [photo("coffee", 45, 33), photo("chelsea", 45, 33), photo("astronaut", 45, 33)]
    FX.add(A + "animated_lossy_45x33.webp",
           pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0, quality=80),
           "animated lossy WebP, first frame")
    FX.add(A + "animated_lossless_45x33.webp",
           pil_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=[50, 60, 70],
                     lossless=True), "animated lossless WebP, first frame")
    with tempfile.TemporaryDirectory() as d:
        f1 = os.path.join(d, "f1.webp")
        f2 = os.path.join(d, "f2.webp")
        Path(f1).write_bytes(pil_bytes(photo("chelsea", 31, 21), "WEBP", quality=85))
        Path(f2).write_bytes(pil_bytes(photo("coffee", 45, 33), "WEBP", quality=85))
        out = os.path.join(d, "anim.webp")
        # canvas is set by the largest frame's extent; first frame at offset (10,8) of a 45x33 canvas
        sh(["webpmux", "-frame", f1, "+100+10+8+0-b", "-frame", f2, "+100+0+0+0-b",
            "-loop", "0", "-bgcolor", "255,0,0,255", "-o", out])
        FX.add(A + "animated_offset_first_frame_45x33.webp", Path(out).read_bytes(),
               "webpmux animation whose first frame covers only part of the canvas (offset 10,8; bgcolor red)")
    # odd sizes
    for (w, h) in [(17, 9), (33, 1), (1, 33), (1, 1), (2, 2), (63, 47)]:
        src = photo("coffee", w, h)
        FX.add(A + f"lossy_{w}x{h}.webp", pil_bytes(src, "WEBP", quality=85), f"lossy, odd size {w}x{h}")
        FX.add(A + f"lossless_{w}x{h}.webp", pil_bytes(src, "WEBP", lossless=True), f"lossless, odd size {w}x{h}")
    FX.add(A + "lossy_alpha_17x9.webp", pil_bytes(photo_rgba("coffee", 17, 9), "WEBP", quality=85),
           "lossy with alpha, odd size")
    FX.add(A + "icc_srgb_lossy_61x43.webp", pil_bytes(o, "WEBP", quality=90, icc_profile=srgb_icc()),
           "VP8X with ICCP chunk")
    lossy = pil_bytes(photo("coffee", 93, 71), "WEBP", quality=85)
    FX.add(A + "truncated_half_93x71.webp", truncate(lossy, 0.5), "lossy, truncated at 50%")
    FX.add(A + "truncated_header.webp", lossy[:20], "only the RIFF/VP8 header start")


# ----------------------------------------------------------------------------
# PNG (hand-written encoder for what Pillow cannot save)


def png_chunk(typ: bytes, data: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(typ + data) if crc is None else crc
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", c & 0xFFFFFFFF)


def pack_rows(samples: np.ndarray, bitdepth: int) -> list[bytes]:
    """samples: HxWxC ints; returns packed scanlines (no filter byte)."""
    h, w, c = samples.shape
    rows = []
    for y in range(h):
        flat = samples[y].reshape(-1).astype(np.uint32)
        if bitdepth == 16:
            rows.append(flat.astype(">u2").tobytes())
        elif bitdepth == 8:
            rows.append(flat.astype(np.uint8).tobytes())
        else:
            per = 8 // bitdepth
            out = bytearray()
            for i in range(0, len(flat), per):
                b = 0
                for j in range(per):
                    v = int(flat[i + j]) if i + j < len(flat) else 0
                    b |= v << (8 - bitdepth * (j + 1))
                out.append(b)
            rows.append(bytes(out))
    return rows


def png_filter(rows: list[bytes], bpp: int, filters: list[int]) -> bytes:
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = filters[i % len(filters)]
        f = bytearray(len(row))
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 0:
                p = 0
            elif ft == 1:
                p = a
            elif ft == 2:
                p = b
            elif ft == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            f[x] = (row[x] - p) & 0xFF
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(samples: np.ndarray, bitdepth: int, colortype: int, *, interlace: bool = False,
              pre_idat: list[bytes] = (), post_idat: list[bytes] = (), filters=(0,), idat_splits: int = 1) -> bytes:
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w, c = samples.shape
    bpp = max(1, (bitdepth * c) // 8)
    if interlace:
        raw = bytearray()
        for (x0, y0, dx, dy) in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += png_filter(pack_rows(sub, bitdepth), bpp, list(filters))
        raw = bytes(raw)
    else:
        raw = png_filter(pack_rows(samples, bitdepth), bpp, list(filters))
    comp = zlib.compress(raw, 9)
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for ch in pre_idat:
        out += ch
    step = max(1, math.ceil(len(comp) / idat_splits))
    for i in range(0, len(comp), step):
        out += png_chunk(b"IDAT", comp[i : i + step])
    for ch in post_idat:
        out += ch
    return out + png_chunk(b"IEND", b"")


def png_family() -> None:
    A = "png/"
    FX.add(A + "rgb8_93x171.png", pil_bytes(photo("astronaut", 93, 171), "PNG"), "Pillow 8-bit RGB")
    rgba = photo_rgba("astronaut", 93, 71)
    FX.add(A + "rgba8_93x71.png", pil_bytes(rgba, "PNG"), "Pillow 8-bit RGBA (soft alpha)")
    FX.add(A + "l8_93x71.png", pil_bytes(photo("camera", 93, 71, "L"), "PNG"), "Pillow 8-bit gray")
    la = Image.merge("LA", [photo("camera", 93, 71, "L"), Image.fromarray(alpha_mask(93, 71))])
    FX.add(A + "la8_93x71.png", pil_bytes(la, "PNG"), "Pillow 8-bit gray+alpha")
    pal = photo("astronaut", 93, 71).quantize(colors=200, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    FX.add(A + "palette8_93x71.png", pil_bytes(pal, "PNG"), "Pillow palette (200 colours)")
    FX.add(A + "palette_trns_single_93x71.png", pil_bytes(pal, "PNG", transparency=3),
           "palette, tRNS making index 3 transparent")
    small_pal = photo("astronaut", 33, 21).quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    FX.add(A + "palette4bit_trns_partial_33x21.png",
           pil_bytes(small_pal, "PNG", bits=4, transparency=bytes([0, 64, 128, 200, 255, 10])),
           "4-bit palette with a partial-alpha tRNS shorter than the palette")
    FX.add(A + "mode1_pillow_33x21.png", pil_bytes(photo("camera", 33, 21, "L").convert("1"), "PNG"),
           "Pillow mode 1 (1-bit gray, dithered)")
    # hand-written gray depths
    for bd in (1, 2, 4):
        FX.add(A + f"gray{bd}bit_37x13.png", png_bytes(ramp(37, 13, 1 << bd), bd, 0), f"{bd}-bit grayscale (odd width)")
    pal_lo = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                       [255, 0, 255], [255, 255, 255], [128, 128, 128], [64, 32, 16], [200, 150, 100],
                       [10, 20, 30], [99, 0, 180], [0, 99, 180], [180, 99, 0], [33, 66, 99]], np.uint8)
    for bd in (1, 2, 4):
        n = 1 << bd
        FX.add(A + f"palette{bd}bit_37x13.png",
               png_bytes(ramp(37, 13, n), bd, 3, pre_idat=[png_chunk(b"PLTE", pal_lo[:n].tobytes())]),
               f"{bd}-bit palette (odd width)")
    # 16-bit
    w, h = 37, 23
    base8 = np.asarray(photo("astronaut", w, h)).astype(np.uint16)
    rgb16 = base8 * 257 + (np.arange(w)[None, :, None] * 7 % 200).astype(np.uint16)  # low byte not a copy
    rgb16 = np.minimum(rgb16, 65535)
    a16 = alpha_mask(w, h).astype(np.uint16) * 257
    a16[1, 1] = 1  # tiny alpha
    gray16 = (ramp(w, h, 65536).astype(np.uint32) * 1 + 3) % 65536
    FX.add(A + "rgb16_37x23.png", png_bytes(rgb16, 16, 2), "16-bit RGB")
    FX.add(A + "rgba16_37x23.png", png_bytes(np.dstack([rgb16, a16]), 16, 6), "16-bit RGBA")
    FX.add(A + "gray16_37x23.png", png_bytes(gray16, 16, 0), "16-bit gray")
    FX.add(A + "gray16_alpha16_37x23.png", png_bytes(np.dstack([gray16, a16]), 16, 4), "16-bit gray+alpha")
    g16t = gray16.copy()
    g16t[::3, ::3] = 4660
    FX.add(A + "gray16_trns_37x23.png",
           png_bytes(g16t, 16, 0, pre_idat=[png_chunk(b"tRNS", struct.pack(">H", 4660))]),
           "16-bit gray with tRNS value 4660 (0x1234)")
    rgb16t = rgb16.copy()
    rgb16t[::4, ::2] = (4660, 22136, 39612)
    FX.add(A + "rgb16_trns_37x23.png",
           png_bytes(rgb16t, 16, 2, pre_idat=[png_chunk(b"tRNS", struct.pack(">HHH", 4660, 22136, 39612))]),
           "16-bit RGB with tRNS colour")
    rgb8 = np.asarray(photo("astronaut", w, h)).copy()
    rgb8[::3, ::2] = (10, 20, 30)
    FX.add(A + "rgb8_trns_37x23.png",
           png_bytes(rgb8, 8, 2, pre_idat=[png_chunk(b"tRNS", struct.pack(">HHH", 10, 20, 30))]),
           "8-bit RGB with tRNS colour (10,20,30)")
    g8 = np.asarray(photo("camera", w, h, "L")).copy()
    g8[::2, ::3] = 77
    FX.add(A + "gray8_trns_37x23.png", png_bytes(g8, 8, 0, pre_idat=[png_chunk(b"tRNS", struct.pack(">H", 77))]),
           "8-bit gray with tRNS value 77")
    g4 = ramp(w, h, 16)
    FX.add(A + "gray4_trns_37x23.png", png_bytes(g4, 4, 0, pre_idat=[png_chunk(b"tRNS", struct.pack(">H", 5))]),
           "4-bit gray with tRNS value 5")
    # filters and interlace
    FX.add(A + "rgb8_all_filters_37x23.png", png_bytes(np.asarray(photo("astronaut", w, h)), 8, 2, filters=(0, 1, 2, 3, 4)),
           "8-bit RGB, rows cycle filter types None/Sub/Up/Average/Paeth, IDAT split in 3", )
    FX.add(A + "rgb8_split_idat_37x23.png",
           png_bytes(np.asarray(photo("astronaut", w, h)), 8, 2, filters=(4, 3), idat_splits=5),
           "8-bit RGB, Paeth/Average rows, IDAT split in 5 chunks")
    FX.add(A + "interlaced_rgb8_37x23.png",
           png_bytes(np.asarray(photo("astronaut", w, h)), 8, 2, interlace=True, filters=(0, 1, 2, 3, 4)),
           "Adam7 interlaced 8-bit RGB")
    FX.add(A + "interlaced_rgba8_93x71.png", png_bytes(np.asarray(rgba), 8, 6, interlace=True, filters=(4, 1)),
           "Adam7 interlaced 8-bit RGBA")
    FX.add(A + "interlaced_gray1bit_37x13.png", png_bytes(ramp(37, 13, 2), 1, 0, interlace=True),
           "Adam7 interlaced 1-bit gray")
    FX.add(A + "interlaced_palette4_trns_37x13.png",
           png_bytes(ramp(37, 13, 16), 4, 3, interlace=True,
                     pre_idat=[png_chunk(b"PLTE", pal_lo.tobytes()), png_chunk(b"tRNS", bytes([255, 0, 128]))]),
           "Adam7 interlaced 4-bit palette with tRNS")
    FX.add(A + "interlaced_rgb16_37x23.png", png_bytes(rgb16, 16, 2, interlace=True), "Adam7 interlaced 16-bit RGB")
    for (ww, hh) in [(1, 1), (2, 2), (3, 9), (9, 3)]:
        FX.add(A + f"interlaced_tiny_{ww}x{hh}.png",
               png_bytes(np.asarray(photo("astronaut", ww, hh)), 8, 2, interlace=True),
               f"Adam7 interlaced {ww}x{hh} (empty passes)")
    # orientation metadata
    o = photo("astronaut", 61, 43)
    FX.add(A + "exif_orientation_6_61x43.png", pil_bytes(o, "PNG", exif=exif_bytes(6)),
           "eXIf chunk with Orientation=6")
    FX.add(A + "exif_orientation_3_after_idat_61x43.png",
           png_bytes(np.asarray(o), 8, 2, post_idat=[png_chunk(b"eXIf", exif_bytes(3))]),
           "eXIf chunk (Orientation=3) after IDAT")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(8).decode(), zip=False)
    FX.add(A + "xmp_itxt_orientation_8_61x43.png", pil_bytes(o, "PNG", pnginfo=info),
           "iTXt XML:com.adobe.xmp with tiff:Orientation=8, no EXIF")
    exif_hex = (b"Exif\x00\x00" + exif_bytes(6)).hex()
    lines = "\n".join(exif_hex[i : i + 72] for i in range(0, len(exif_hex), 72))
    raw_prof = f"\nexif\n{len(exif_hex) // 2:8d}\n{lines}\n".encode()
    ztxt = png_chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(raw_prof, 9))
    FX.add(A + "raw_profile_exif_ztxt_orientation_6_61x43.png",
           png_bytes(np.asarray(o), 8, 2, pre_idat=[ztxt]),
           "ImageMagick-style zTXt 'Raw profile type exif' with Orientation=6")
    text = png_chunk(b"tEXt", b"Raw profile type exif\x00" + f"\nexif\n{len(exif_bytes(5)):8d}\n{exif_bytes(5).hex()}\n".encode())
    FX.add(A + "raw_profile_exif_text_orientation_5_61x43.png",
           png_bytes(np.asarray(o), 8, 2, pre_idat=[text]),
           "tEXt 'Raw profile type exif' (no Exif prefix) with Orientation=5")
    FX.add(A + "gamma_chunk_37x23.png",
           png_bytes(np.asarray(photo("astronaut", w, h)), 8, 2, pre_idat=[png_chunk(b"gAMA", struct.pack(">I", 100000))]),
           "gAMA=1.0 (ignored by Pillow)")
    # APNG
    frames = [photo("astronaut", 45, 33), photo("coffee", 45, 33), photo("chelsea", 45, 33)]
    FX.add(A + "apng_3_frames_45x33.png",
           pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0),
           "APNG, first frame")
    FX.add(A + "apng_default_image_45x33.png",
           pil_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, default_image=True),
           "APNG whose IDAT default image is not part of the animation")
    rgba_frames = [photo_rgba("astronaut", 45, 33), photo_rgba("coffee", 45, 33)]
    FX.add(A + "apng_rgba_45x33.png",
           pil_bytes(rgba_frames[0], "PNG", save_all=True, append_images=rgba_frames[1:], duration=100),
           "APNG RGBA, first frame")
    # odd sizes
    for (ww, hh) in [(17, 9), (33, 1), (1, 33), (1, 1)]:
        FX.add(A + f"rgb8_{ww}x{hh}.png", pil_bytes(photo("astronaut", ww, hh), "PNG"), f"8-bit RGB {ww}x{hh}")
    # damaged
    good = png_bytes(np.asarray(photo("astronaut", 37, 23)), 8, 2)
    ihdr_crc_at = 8 + 8 + 13
    bad = bytearray(good)
    bad[ihdr_crc_at] ^= 0xFF
    FX.add(A + "bad_crc_ihdr_37x23.png", bytes(bad), "IHDR with a wrong CRC")
    idat_at = good.index(b"IDAT")
    ln = struct.unpack(">I", good[idat_at - 4 : idat_at])[0]
    bad = bytearray(good)
    bad[idat_at + 4 + ln] ^= 0xFF
    FX.add(A + "bad_crc_idat_37x23.png", bytes(bad), "IDAT with a wrong CRC")
    anc = png_bytes(np.asarray(photo("astronaut", 37, 23)), 8, 2,
                    pre_idat=[png_chunk(b"tEXt", b"Comment\x00hello", crc=0x12345678)])
    FX.add(A + "bad_crc_text_chunk_37x23.png", anc, "tEXt chunk with a wrong CRC")
    FX.add(A + "truncated_half_37x23.png", truncate(good, 0.5), "cut inside IDAT")
    FX.add(A + "no_iend_37x23.png", good[:-12], "IEND missing")
    FX.add(A + "truncated_after_ihdr.png", good[: 8 + 25], "signature + IHDR only")


# ----------------------------------------------------------------------------
# GIF (hand-written encoder: literal-code LZW, so no code-size growth to get wrong)


def gif_lzw(indices: np.ndarray, min_code_size: int) -> bytes:
    """LZW stream (already split into sub-blocks) that codes every pixel as a literal.

    A clear code is sent often enough that the code width never grows: a valid
    stream for every decoder, just not a small one."""
    clear = 1 << min_code_size
    eoi = clear + 1
    width = min_code_size + 1
    per_clear = max(1, clear - 3)
    bits = 0
    nbits = 0
    out = bytearray()

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    flat = [int(v) for v in indices.reshape(-1)]
    for i in range(0, len(flat), per_clear):
        emit(clear)
        for v in flat[i : i + per_clear]:
            assert v < clear
            emit(v)
    emit(eoi)
    if nbits:
        out.append(bits & 0xFF)
    blocks = bytearray([min_code_size])
    for i in range(0, len(out), 255):
        chunk = out[i : i + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks + b"\x00")


def gif_table(pal: np.ndarray) -> tuple[int, bytes]:
    n = len(pal)
    size_bits = max(1, math.ceil(math.log2(max(n, 2))))
    table = np.zeros((1 << size_bits, 3), np.uint8)
    table[:n] = pal
    return size_bits - 1, table.tobytes()


def interlace_rows(a: np.ndarray) -> np.ndarray:
    h = a.shape[0]
    order = list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))
    return a[order]


def gif_bytes(screen: tuple[int, int], frames: list[dict], gct: np.ndarray | None = None, version: bytes = b"89a",
              background: int = 0, loop: int | None = None) -> bytes:
    """frames: dicts with indices (HxW), optional x, y, lct, interlace, transparent, delay, disposal."""
    w, h = screen
    flags = 0
    table = b""
    if gct is not None:
        sz, table = gif_table(gct)
        flags = 0x80 | (7 << 4) | sz
    out = bytearray(b"GIF" + version + struct.pack("<HHBBB", w, h, flags, background, 0) + table)
    if loop is not None:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    for fr in frames:
        idx = np.asarray(fr["indices"])
        fh, fw = idx.shape
        if "transparent" in fr or "delay" in fr or "disposal" in fr:
            packed = (fr.get("disposal", 0) << 2) | (1 if "transparent" in fr else 0)
            out += b"\x21\xf9\x04" + struct.pack("<BHB", packed, fr.get("delay", 0), fr.get("transparent", 0)) + b"\x00"
        iflags = 0
        ltable = b""
        if fr.get("lct") is not None:
            sz, ltable = gif_table(fr["lct"])
            iflags = 0x80 | sz
        if fr.get("interlace"):
            iflags |= 0x40
            idx = interlace_rows(idx)
        out += b"," + struct.pack("<HHHHB", fr.get("x", 0), fr.get("y", 0), fw, fh, iflags) + ltable
        mcs = max(2, int(idx.max()).bit_length() if idx.size else 2)
        mcs = max(mcs, fr.get("min_code_size", 0))
        out += gif_lzw(idx, mcs)
    return bytes(out + b";")


def quantized(name: str, w: int, h: int, colors: int) -> tuple[np.ndarray, np.ndarray]:
    q = photo(name, w, h).quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal = np.array(q.getpalette()[: 3 * colors], np.uint8).reshape(-1, 3)
    return np.asarray(q), pal


def gif_family() -> None:
    A = "gif/"
    q = photo("chelsea", 93, 71).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    FX.add(A + "pillow_global_table_interlaced_93x71.gif", pil_bytes(q, "GIF"),
           "Pillow GIF: global table, interlaced (Pillow's default)")
    FX.add(A + "pillow_global_table_progressive_rows_93x71.gif", pil_bytes(q, "GIF", interlace=False),
           "Pillow GIF: global table, not interlaced")
    FX.add(A + "pillow_floyd_steinberg_from_rgb_93x71.gif", pil_bytes(photo("coffee", 93, 71), "GIF"),
           "Pillow GIF saved straight from RGB (Pillow quantises with its web palette + dithering)")
    FX.add(A + "pillow_gray_L_37x23.gif", pil_bytes(photo("camera", 37, 23, "L"), "GIF"),
           "Pillow GIF from mode L (grayscale palette)")
    idx, pal = quantized("chelsea", 37, 23, 16)
    FX.add(A + "global_table_16_37x23.gif", gif_bytes((37, 23), [{"indices": idx}], gct=pal),
           "hand-written: 16-colour global table")
    FX.add(A + "local_table_only_37x23.gif", gif_bytes((37, 23), [{"indices": idx, "lct": pal}]),
           "hand-written: no global table, local table only")
    FX.add(A + "local_overrides_global_37x23.gif",
           gif_bytes((37, 23), [{"indices": idx, "lct": pal}], gct=pal[::-1].copy()),
           "hand-written: global table and a different local table (local wins)")
    FX.add(A + "no_color_table_37x23.gif", gif_bytes((37, 23), [{"indices": idx}]),
           "hand-written: no global and no local colour table")
    FX.add(A + "gif87a_37x23.gif", gif_bytes((37, 23), [{"indices": idx}], gct=pal, version=b"87a"), "GIF87a")
    t = idx.copy()
    t[::3, ::2] = 5
    FX.add(A + "transparency_index5_37x23.gif",
           gif_bytes((37, 23), [{"indices": t, "transparent": 5}], gct=pal), "GCE transparent index 5")
    FX.add(A + "transparency_unused_index_37x23.gif",
           gif_bytes((37, 23), [{"indices": idx, "transparent": 15}], gct=np.vstack([pal[:15], [[0, 255, 0]]])),
           "GCE transparent index that only a few pixels use")
    FX.add(A + "pillow_transparency_37x23.gif",
           _pillow_gif_with_transparency(t, pal), "Pillow GIF with transparency=5")
    FX.add(A + "interlaced_37x23.gif", gif_bytes((37, 23), [{"indices": idx, "interlace": True}], gct=pal),
           "hand-written interlaced")
    FX.add(A + "interlaced_tiny_5x3.gif",
           gif_bytes((5, 3), [{"indices": idx[:3, :5], "interlace": True}], gct=pal), "interlaced, 3 rows")
    idx2, pal2 = quantized("coffee", 21, 13, 4)
    FX.add(A + "first_frame_offset_smaller_37x23.gif",
           gif_bytes((37, 23), [{"indices": idx2, "x": 9, "y": 5}], gct=np.vstack([pal2, [[255, 0, 0]]]), background=4),
           "first frame 21x13 at (9,5) on a 37x23 screen, background index 4 (red)")
    FX.add(A + "first_frame_offset_transparent_bg_37x23.gif",
           gif_bytes((37, 23), [{"indices": idx2, "x": 9, "y": 5, "transparent": 4}],
                     gct=np.vstack([pal2, [[255, 0, 0]]]), background=4),
           "first frame at (9,5), background index 4 is also the transparent index")
    FX.add(A + "frame_exceeds_screen_20x10.gif",
           gif_bytes((20, 10), [{"indices": idx2, "x": 5, "y": 2}], gct=pal2),
           "frame 21x13 at (5,2) extends past a 20x10 screen")
    frames = [photo("chelsea", 45, 33), photo("coffee", 45, 33), photo("astronaut", 45, 33)]
    FX.add(A + "animated_pillow_45x33.gif",
           pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
           "Pillow animated GIF, first frame")
    fa, pa = quantized("chelsea", 45, 33, 32)
    fb, _ = quantized("coffee", 45, 33, 32)
    FX.add(A + "animated_handwritten_local_tables_45x33.gif",
           gif_bytes((45, 33), [{"indices": fa, "lct": pa, "delay": 10}, {"indices": fb, "lct": pa[::-1].copy(), "delay": 10}],
                     loop=0),
           "2-frame animation, local tables only, first frame")
    FX.add(A + "single_pixel_1x1.gif", gif_bytes((1, 1), [{"indices": np.array([[1]])}], gct=pal[:2]), "1x1")
    good = gif_bytes((37, 23), [{"indices": idx}], gct=pal)
    FX.add(A + "truncated_half_37x23.gif", truncate(good, 0.5), "cut inside the LZW data")
    FX.add(A + "no_trailer_37x23.gif", good[:-1], "trailer byte ';' missing")
    FX.add(A + "truncated_header.gif", good[:10], "cut inside the logical screen descriptor")


def _pillow_gif_with_transparency(idx: np.ndarray, pal: np.ndarray) -> bytes:
    im = Image.fromarray(idx.astype(np.uint8), "P")
    im.putpalette(pal.tobytes())
    return pil_bytes(im, "GIF", transparency=5, optimize=False)


# ----------------------------------------------------------------------------
# BMP (hand-written)


def bmp_bytes(w: int, h: int, bpp: int, pixels: bytes, *, header: int = 40, compression: int = 0,
              palette: np.ndarray | None = None, masks: tuple | None = None, planes: int = 1,
              clr_used: int | None = None, masks_after_header: bool = False) -> bytes:
    """header: 12 (OS/2 v1 core), 40, 52, 56, 64 (OS/2 v2), 108 (V4), 124 (V5). h<0 = top-down."""
    pal = b""
    if palette is not None:
        if header == 12:
            pal = palette[:, ::-1].astype(np.uint8).tobytes()
        else:
            pal = np.hstack([palette[:, ::-1], np.zeros((len(palette), 1), np.uint8)]).astype(np.uint8).tobytes()
    if header == 12:
        hdr = struct.pack("<IHHHH", 12, w, h & 0xFFFF, planes, bpp)
    else:
        n_colors = clr_used if clr_used is not None else (len(palette) if palette is not None else 0)
        hdr = struct.pack("<IiiHHIIiiII", header, w, h, planes, bpp, compression, len(pixels), 2835, 2835, n_colors, 0)
        if header in (52, 56, 108, 124):
            m = list(masks or (0, 0, 0, 0)) + [0]
            hdr += struct.pack("<III", *m[:3])
            if header >= 56:
                hdr += struct.pack("<I", m[3])
            if header >= 108:
                hdr += b"BGRs" + bytes(36) + bytes(12)
            if header == 124:
                hdr += struct.pack("<IIII", 4, 0, 0, 0)
        elif header == 64:
            hdr += bytes(24)
        if masks_after_header:
            hdr += struct.pack("<" + "I" * len(masks), *masks)
    offset = 14 + len(hdr) + len(pal)
    body = hdr + pal + pixels
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, offset) + body


def bmp_rows(rows: list[bytes], top_down: bool = False) -> bytes:
    out = bytearray()
    for r in (rows if top_down else rows[::-1]):
        out += r + bytes((-len(r)) % 4)
    return bytes(out)


def pack_bits(idx: np.ndarray, bpp: int) -> list[bytes]:
    return pack_rows(idx[:, :, None], bpp)


def rle8_stream(idx: np.ndarray, early_eob: bool = False) -> bytes:
    """RLE8 for a bottom-up image with every escape: runs, absolute runs (odd length padded),
    end-of-line before the row is full, a delta skip, and end-of-bitmap before the last rows."""
    h, w = idx.shape
    rows = idx[::-1]
    out = bytearray()
    y = 0
    while y < h:
        row = [int(v) for v in rows[y]]
        if early_eob and y == h - 2:
            out += b"\x00\x01"  # end of bitmap: the last two rows (top of the image) stay index 0
            return bytes(out)
        x = 0
        limit = w if y % 4 != 1 else w // 2  # every 4th row: end-of-line early
        while x < limit:
            if y % 4 == 2 and x == 3 and w > 10:
                out += b"\x00\x02" + bytes([4, 0])  # delta: skip 4 pixels right
                x += 4
                continue
            run = 1
            while x + run < limit and run < 255 and row[x + run] == row[x]:
                run += 1
            if run >= 2:
                out += bytes([run, row[x]])
                x += run
            else:
                n = min(255, limit - x)
                if n >= 3:
                    n = min(n, 5 + (y % 3))  # absolute runs of 5, 6, 7 (7 and 5 need a pad byte)
                    lit = row[x : x + n]
                    out += bytes([0, n]) + bytes(lit) + (b"\x00" if n % 2 else b"")
                    x += n
                else:
                    out += bytes([1, row[x]])
                    x += 1
        if y == 3 and h > 6:
            out += b"\x00\x02" + bytes([0, 1])  # delta: one row up, same column (end of row 3 skips row 4)
            # the cursor is now in row 4 at column `x` (== w): encode nothing there, end the line
            out += b"\x00\x00"
            y += 2
            continue
        out += b"\x00\x00"
        y += 1
    out += b"\x00\x01"
    return bytes(out)


def rle4_stream(idx: np.ndarray, early_eob: bool = False) -> bytes:
    """RLE4 (indices < 16), bottom-up, with runs of two alternating colours, absolute runs,
    early end-of-line, a delta and end-of-bitmap."""
    h, w = idx.shape
    rows = idx[::-1]
    out = bytearray()
    for y in range(h):
        row = [int(v) for v in rows[y]]
        x = 0
        limit = w if y % 3 != 1 else max(1, w - 5)
        while x < limit:
            if y == 2 and x == 2 and w > 8:
                out += b"\x00\x02" + bytes([3, 0])
                x += 3
                continue
            n = min(limit - x, 7)
            if (x // 7) % 2 == 0 and n >= 3:
                lit = row[x : x + n]
                packed = bytearray()
                for i in range(0, n, 2):
                    a = lit[i]
                    b = lit[i + 1] if i + 1 < n else 0
                    packed.append((a << 4) | b)
                out += bytes([0, n]) + packed + (b"\x00" if len(packed) % 2 else b"")
                x += n
            else:
                out += bytes([n, (row[x] << 4) | row[min(x + 1, w - 1)]])
                x += n
        out += b"\x00\x00"
        if early_eob and y == h - 3:
            break
    out += b"\x00\x01"
    return bytes(out)


def _rle8_simple(idx: np.ndarray) -> bytes:
    out = bytearray()
    for row in idx[::-1]:
        row = [int(v) for v in row]
        x = 0
        while x < len(row):
            run = 1
            while x + run < len(row) and run < 255 and row[x + run] == row[x]:
                run += 1
            out += bytes([run, row[x]])
            x += run
        out += b"\x00\x00"
    return bytes(out[:-2] + b"\x00\x01")


def bmp_family() -> None:
    A = "bmp/"
    w, h = 37, 23
    idx256, pal256 = quantized("chelsea", w, h, 256)
    idx16, pal16 = quantized("chelsea", w, h, 16)
    idx2 = (ramp(w, h, 2)).astype(np.uint8)
    rgb = np.asarray(photo("chelsea", w, h)).astype(np.uint32)
    bw = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    FX.add(A + "pal1_bw_37x23.bmp", bmp_bytes(w, h, 1, bmp_rows(pack_bits(idx2, 1)), palette=bw), "1-bit, black/white palette")
    FX.add(A + "pal1_color_37x23.bmp",
           bmp_bytes(w, h, 1, bmp_rows(pack_bits(idx2, 1)), palette=np.array([[200, 30, 10], [10, 60, 220]], np.uint8)),
           "1-bit, two-colour (non-gray) palette")
    FX.add(A + "pal4_37x23.bmp", bmp_bytes(w, h, 4, bmp_rows(pack_bits(idx16, 4)), palette=pal16), "4-bit palette")
    FX.add(A + "pal8_37x23.bmp", bmp_bytes(w, h, 8, bmp_rows(pack_bits(idx256, 8)), palette=pal256), "8-bit palette")
    gray_pal = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
    FX.add(A + "pal8_grayscale_37x23.bmp",
           bmp_bytes(w, h, 8, bmp_rows(pack_bits(np.asarray(photo("camera", w, h, "L")), 8)), palette=gray_pal),
           "8-bit with an identity gray palette")
    FX.add(A + "pal8_clrused_20_37x23.bmp",
           bmp_bytes(w, h, 8, bmp_rows(pack_bits(quantized("chelsea", w, h, 20)[0], 8)),
                     palette=quantized("chelsea", w, h, 20)[1], clr_used=20),
           "8-bit with biClrUsed=20 (short palette)")
    FX.add(A + "pal8_topdown_37x23.bmp", bmp_bytes(w, -h, 8, bmp_rows(pack_bits(idx256, 8), top_down=True), palette=pal256),
           "8-bit top-down (negative height)")
    r5, g5, b5 = rgb[..., 0] >> 3, rgb[..., 1] >> 3, rgb[..., 2] >> 3
    g6 = rgb[..., 1] >> 2
    p555 = ((r5 << 10) | (g5 << 5) | b5).astype("<u2")
    p555[0, 0] |= 0x8000  # top bit set: must be ignored
    p565 = ((r5 << 11) | (g6 << 5) | b5).astype("<u2")
    rows555 = [r.tobytes() for r in p555]
    rows565 = [r.tobytes() for r in p565]
    FX.add(A + "rgb16_555_bi_rgb_37x23.bmp", bmp_bytes(w, h, 16, bmp_rows(rows555)), "16-bit BI_RGB (implicit 5-5-5)")
    FX.add(A + "rgb16_555_bitfields_37x23.bmp",
           bmp_bytes(w, h, 16, bmp_rows(rows555), compression=3, masks=(0x7C00, 0x03E0, 0x001F), masks_after_header=True),
           "16-bit BI_BITFIELDS 5-5-5 masks after a 40-byte header")
    FX.add(A + "rgb16_565_bitfields_37x23.bmp",
           bmp_bytes(w, h, 16, bmp_rows(rows565), compression=3, masks=(0xF800, 0x07E0, 0x001F), masks_after_header=True),
           "16-bit BI_BITFIELDS 5-6-5")
    FX.add(A + "rgb16_565_v5_37x23.bmp",
           bmp_bytes(w, h, 16, bmp_rows(rows565), header=124, compression=3, masks=(0xF800, 0x07E0, 0x001F, 0)),
           "16-bit 5-6-5, masks inside a V5 header")
    bgr = rgb[..., ::-1].astype(np.uint8)
    FX.add(A + "rgb24_37x23.bmp", bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr])), "24-bit BGR (rows padded)")
    FX.add(A + "rgb24_topdown_37x23.bmp", bmp_bytes(w, -h, 24, bmp_rows([r.tobytes() for r in bgr], top_down=True)),
           "24-bit top-down")
    a = alpha_mask(w, h).astype(np.uint32)
    bgra = np.dstack([bgr, a.astype(np.uint8)])
    rows32 = [r.tobytes() for r in bgra]
    FX.add(A + "rgb32_bi_rgb_junk_4th_byte_37x23.bmp", bmp_bytes(w, h, 32, bmp_rows(rows32)),
           "32-bit BI_RGB whose 4th byte holds varying values (BGRX: ignored)")
    FX.add(A + "rgb32_bitfields_no_alpha_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), compression=3, masks=(0xFF0000, 0xFF00, 0xFF), masks_after_header=True),
           "32-bit BI_BITFIELDS without an alpha mask (40-byte header)")
    FX.add(A + "rgba32_v4_alpha_mask_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), header=108, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
           "32-bit V4 header with an alpha mask")
    FX.add(A + "rgba32_v5_alpha_mask_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), header=124, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
           "32-bit V5 header with an alpha mask")
    FX.add(A + "rgba32_v3_56_alpha_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), header=56, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
           "32-bit BITMAPV3INFOHEADER (56 bytes) with an alpha mask")
    FX.add(A + "rgb32_v2_52_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), header=52, compression=3, masks=(0xFF0000, 0xFF00, 0xFF)),
           "32-bit BITMAPV2INFOHEADER (52 bytes), RGB masks")
    FX.add(A + "rgba32_v5_bi_rgb_37x23.bmp", bmp_bytes(w, h, 32, bmp_rows(rows32), header=124),
           "32-bit BI_RGB in a V5 header (no masks: alpha byte ignored?)")
    FX.add(A + "rgb32_odd_masks_37x23.bmp",
           bmp_bytes(w, h, 32, bmp_rows(rows32), header=108, compression=3, masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
           "32-bit V4 with R and B masks swapped (RGBA byte order)")
    FX.add(A + "rgb16_4444_unusual_masks_37x23.bmp",
           bmp_bytes(w, h, 16, bmp_rows(rows555), header=108, compression=3, masks=(0x0F00, 0x00F0, 0x000F, 0xF000)),
           "16-bit V4 with 4-4-4-4 masks")
    FX.add(A + "os2v1_core_24bit_37x23.bmp", bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr]), header=12),
           "OS/2 v1 BITMAPCOREHEADER (12 bytes), 24-bit")
    FX.add(A + "os2v1_core_pal8_37x23.bmp",
           bmp_bytes(w, h, 8, bmp_rows(pack_bits(idx256, 8)), header=12, palette=pal256),
           "OS/2 v1 header, 8-bit with 3-byte palette entries")
    FX.add(A + "os2v2_64_pal4_37x23.bmp", bmp_bytes(w, h, 4, bmp_rows(pack_bits(idx16, 4)), header=64, palette=pal16),
           "OS/2 v2 header (64 bytes), 4-bit palette")
    FX.add(A + "os2v2_64_rgb24_37x23.bmp", bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr]), header=64),
           "OS/2 v2 header (64 bytes), 24-bit")
    FX.add(A + "planes_2_rgb24_37x23.bmp", bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr]), planes=2),
           "24-bit with biPlanes=2")
    FX.add(A + "v4_rgb24_37x23.bmp", bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr]), header=108), "V4 header 24-bit")
    FX.add(A + "v5_pal8_37x23.bmp", bmp_bytes(w, h, 8, bmp_rows(pack_bits(idx256, 8)), header=124, palette=pal256),
           "V5 header 8-bit palette")
    # RLE
    rw, rh = 41, 19
    ridx, rpal = quantized("coffee", rw, rh, 24)
    FX.add(A + "rle8_escapes_41x19.bmp", bmp_bytes(rw, rh, 8, rle8_stream(ridx), compression=1, palette=rpal),
           "RLE8 with runs, absolute runs (odd ones padded), early end-of-line, delta skips")
    FX.add(A + "rle8_early_eob_41x19.bmp",
           bmp_bytes(rw, rh, 8, rle8_stream(ridx, early_eob=True), compression=1, palette=rpal),
           "RLE8 whose end-of-bitmap comes two rows early")
    FX.add(A + "rle8_topdown_41x19.bmp", bmp_bytes(rw, -rh, 8, rle8_stream(ridx), compression=1, palette=rpal),
           "RLE8 with a negative (top-down) height (not allowed by the spec)")
    ridx4, rpal4 = quantized("coffee", rw, rh, 16)
    FX.add(A + "rle4_escapes_41x19.bmp", bmp_bytes(rw, rh, 4, rle4_stream(ridx4), compression=2, palette=rpal4),
           "RLE4 with alternating-colour runs, absolute runs, early end-of-line, a delta")
    FX.add(A + "rle4_early_eob_41x19.bmp",
           bmp_bytes(rw, rh, 4, rle4_stream(ridx4, early_eob=True), compression=2, palette=rpal4),
           "RLE4 whose end-of-bitmap comes two rows early")
    FX.add(A + "rle4_topdown_41x19.bmp", bmp_bytes(rw, -rh, 4, rle4_stream(ridx4), compression=2, palette=rpal4),
           "RLE4 top-down")
    FX.add(A + "rle8_runs_only_37x23.bmp", bmp_bytes(w, h, 8, _rle8_simple(idx256), compression=1, palette=pal256),
           "RLE8 made of plain runs and EOLs only")
    # Pillow's own writer
    FX.add(A + "pillow_rgb_93x71.bmp", pil_bytes(photo("chelsea", 93, 71), "BMP"), "Pillow-saved 24-bit")
    FX.add(A + "pillow_mode1_37x23.bmp", pil_bytes(photo("camera", w, h, "L").convert("1"), "BMP"), "Pillow-saved mode 1")
    FX.add(A + "pillow_L_37x23.bmp", pil_bytes(photo("camera", w, h, "L"), "BMP"), "Pillow-saved mode L")
    # damaged / odd
    good = bmp_bytes(w, h, 24, bmp_rows([r.tobytes() for r in bgr]))
    FX.add(A + "truncated_half_37x23.bmp", truncate(good, 0.5), "pixel data cut in half")
    FX.add(A + "truncated_header.bmp", good[:30], "cut inside the info header")
    os2_short = b"BM" + struct.pack("<IHHI", 14 + 16 + len(good) - 54, 0, 0, 30) + struct.pack("<IiiHH", 16, w, h, 1, 24) + good[54:]
    FX.add(A + "os2v2_short_16_header_37x23.bmp", os2_short, "OS/2 v2 short header (16 bytes)")
    FX.add(A + "bi_png_compression_37x23.bmp",
           bmp_bytes(w, h, 0, pil_bytes(photo("chelsea", w, h), "PNG"), compression=5),
           "BI_PNG (compression 5): a PNG inside a BMP")
    FX.add(A + "bi_jpeg_compression_37x23.bmp",
           bmp_bytes(w, h, 0, pil_bytes(photo("chelsea", w, h), "JPEG"), compression=4),
           "BI_JPEG (compression 4): a JPEG inside a BMP")


# ----------------------------------------------------------------------------
# TIFF


def tif(data, **kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    kw.setdefault("metadata", None)
    kw.setdefault("software", False)
    tifffile.imwrite(buf, data, **kw)
    return buf.getvalue()


def tiffcp(data: bytes, *args: str) -> bytes:
    return tool_file(lambda s, d: ["tiffcp", *args, s, d], ".tif", data, ".tif")


def tiff_file(w: int, h: int, tags: dict, strips: list[bytes], e: str = "<") -> bytes:
    """Minimal TIFF writer: tags {tag: (type, values|bytes)}; StripOffsets/StripByteCounts are filled in."""
    data_start = 8
    blob = bytearray()
    offsets = []
    for s in strips:
        offsets.append(data_start + len(blob))
        blob += s
        if len(blob) % 2:
            blob += b"\x00"
    tags = dict(tags)
    tags[256] = (4, [w])
    tags[257] = (4, [h])
    tags[273] = (4, offsets)
    tags[279] = (4, [len(s) for s in strips])
    ifd_at = data_start + len(blob)
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}
    n = len(tags)
    extra_at = ifd_at + 2 + 12 * n + 4
    entries = bytearray(struct.pack(e + "H", n))
    extra = bytearray()
    for tag in sorted(tags):
        typ, vals = tags[tag]
        if isinstance(vals, (bytes, bytearray)):
            raw = bytes(vals)
            count = len(raw) // sizes[typ]
        else:
            fmt = {1: "B", 3: "H", 4: "I", 5: "II"}[typ]
            flat = [v for pair in vals for v in pair] if typ == 5 else list(vals)
            raw = struct.pack(e + fmt[0] * len(flat), *flat)
            count = len(vals)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack(e + "I", extra_at + len(extra))
            extra += raw + (b"\x00" if len(raw) % 2 else b"")
        entries += struct.pack(e + "HHI", tag, typ, count) + field
    entries += struct.pack(e + "I", 0)
    head = (b"II*\x00" if e == "<" else b"MM\x00*") + struct.pack(e + "I", ifd_at)
    return head + bytes(blob) + bytes(entries) + bytes(extra)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    r, g, b = [rgb[..., i].astype(np.float64) for i in range(3)]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.round(np.dstack([y, cb, cr])), 0, 255).astype(np.uint8)


def ycbcr_subsampled_strip(rgb: np.ndarray, sh_: int, sv: int) -> bytes:
    """Uncompressed YCbCr data units (sh_*sv Y samples, then Cb, Cr) for the whole image."""
    ycc = rgb_to_ycbcr(rgb)
    h, w, _ = ycc.shape
    ph, pw = -h % sv, -w % sh_
    ycc = np.pad(ycc, ((0, ph), (0, pw), (0, 0)), mode="edge")
    out = bytearray()
    for by in range(0, ycc.shape[0], sv):
        for bx in range(0, ycc.shape[1], sh_):
            blk = ycc[by : by + sv, bx : bx + sh_]
            out += blk[..., 0].reshape(-1).tobytes()
            out.append(int(round(blk[..., 1].mean())))
            out.append(int(round(blk[..., 2].mean())))
    return bytes(out)


def tiff_family() -> None:
    A = "tiff/"
    w, h = 45, 29
    rgb = np.asarray(photo("ihc", w, h))
    gray = np.asarray(photo("moon", w, h, "L"))
    rgba = np.asarray(photo_rgba("ihc", w, h))
    FX.add(A + "rgb8_raw_le_45x29.tif", tif(rgb, photometric="rgb", byteorder="<"), "uncompressed RGB, little-endian")
    FX.add(A + "rgb8_raw_be_45x29.tif", tif(rgb, photometric="rgb", byteorder=">"), "uncompressed RGB, big-endian")
    FX.add(A + "gray8_raw_45x29.tif", tif(gray, photometric="minisblack"), "uncompressed gray min-is-black")
    FX.add(A + "gray8_miniswhite_45x29.tif", tif(255 - gray, photometric="miniswhite"), "8-bit gray min-is-white")
    FX.add(A + "rgb8_rows_per_strip_5_45x29.tif", tif(rgb, photometric="rgb", rowsperstrip=5), "RGB, 9 strips of 5 rows")
    FX.add(A + "rgb8_lzw_45x29.tif", tif(rgb, photometric="rgb", compression="lzw"), "LZW")
    FX.add(A + "rgb8_lzw_predictor2_45x29.tif", tif(rgb, photometric="rgb", compression="lzw", predictor=2),
           "LZW with horizontal predictor 2")
    FX.add(A + "rgb8_lzw_predictor2_be_45x29.tif",
           tif(rgb, photometric="rgb", compression="lzw", predictor=2, byteorder=">"), "LZW predictor 2, big-endian")
    FX.add(A + "rgb8_deflate_adobe_45x29.tif", tif(rgb, photometric="rgb", compression="adobe_deflate"),
           "Adobe deflate (compression 8)")
    FX.add(A + "rgb8_deflate_old_45x29.tif", tif(rgb, photometric="rgb", compression="deflate"),
           "old deflate (compression 32946)")
    FX.add(A + "rgb8_packbits_45x29.tif", tif(rgb, photometric="rgb", compression="packbits"), "PackBits")
    FX.add(A + "rgb8_lzma_45x29.tif", tif(rgb, photometric="rgb", compression="lzma"), "LZMA (compression 34925)")
    FX.add(A + "rgb8_zstd_45x29.tif", tif(rgb, photometric="rgb", compression="zstd"), "ZSTD (compression 50000)")
    FX.add(A + "rgb8_webp_45x29.tif", tif(rgb, photometric="rgb", compression="webp", compressionargs={"level": 80}),
           "WebP-in-TIFF (compression 50001), lossy")
    FX.add(A + "rgb8_pillow_lzw_45x29.tif", pil_bytes(photo("ihc", w, h), "TIFF", compression="tiff_lzw"),
           "Pillow (libtiff) LZW")
    FX.add(A + "rgb8_pillow_raw_45x29.tif", pil_bytes(photo("ihc", w, h), "TIFF"), "Pillow uncompressed")
    # JPEG in TIFF
    FX.add(A + "jpeg_ycbcr_420_tifffile_45x29.tif", tif(rgb, photometric="rgb", compression="jpeg"),
           "JPEG-in-TIFF, YCbCr 2x2 subsampled, one full JPEG stream per strip (tifffile)")
    FX.add(A + "jpeg_ycbcr_422_tifffile_45x29.tif",
           tif(rgb, photometric="ycbcr", compression="jpeg", subsampling=(2, 1)), "JPEG-in-TIFF YCbCr 2x1")
    raw_rgb = tif(rgb, photometric="rgb")
    FX.add(A + "jpeg_ycbcr_tiffcp_45x29.tif", tiffcp(raw_rgb, "-c", "jpeg:90", "-r", "16"),
           "libtiff JPEG-in-TIFF YCbCr with shared JPEGTables, 16-row strips")
    FX.add(A + "jpeg_rgb_tiffcp_45x29.tif", tiffcp(raw_rgb, "-c", "jpeg:r:90", "-r", "16"),
           "libtiff JPEG-in-TIFF, RGB components (Photometric RGB)")
    FX.add(A + "jpeg_pillow_45x29.tif", pil_bytes(photo("ihc", w, h), "TIFF", compression="jpeg", quality=90),
           "Pillow (libtiff) JPEG-in-TIFF")
    FX.add(A + "jpeg_gray_tiffcp_45x29.tif", tiffcp(tif(gray, photometric="minisblack"), "-c", "jpeg:90", "-r", "16"),
           "libtiff JPEG-in-TIFF grayscale")
    FX.add(A + "jpeg_tiled_ycbcr_45x29.tif",
           tif(rgb, photometric="rgb", compression="jpeg", tile=(16, 16)), "tiled JPEG-in-TIFF YCbCr")
    # old-style JPEG (compression 6) with a JPEGInterchangeFormat stream
    jp = pil_bytes(photo("ihc", w, h), "JPEG", quality=90, subsampling=2)
    ojpeg_tags = {258: (3, [8, 8, 8]), 259: (3, [6]), 262: (3, [6]), 277: (3, [3]), 278: (4, [h]),
                  513: (4, [8]), 514: (4, [len(jp)]), 530: (3, [2, 2])}
    FX.add(A + "ojpeg_interchange_45x29.tif", tiff_file(w, h, ojpeg_tags, [jp]),
           "old-style JPEG (compression 6): strip = JPEGInterchangeFormat = a whole JFIF stream")
    # uncompressed YCbCr, subsampled (handled by libtiff's RGBA interface)
    FX.add(A + "ycbcr_raw_subsampled_22_45x29.tif",
           tiff_file(w, h, {258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [6]), 277: (3, [3]), 278: (4, [h]),
                            284: (3, [1]), 530: (3, [2, 2]), 532: (5, [(0, 1), (255, 1), (128, 1), (255, 1), (128, 1), (255, 1)])},
                     [ycbcr_subsampled_strip(rgb, 2, 2)]),
           "uncompressed YCbCr 2x2 subsampled data units")
    FX.add(A + "ycbcr_raw_subsampled_22_orientation_6_45x29.tif",
           tiff_file(w, h, {258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [6]), 274: (3, [6]), 277: (3, [3]),
                            278: (4, [h]), 284: (3, [1]), 530: (3, [2, 2]),
                            532: (5, [(0, 1), (255, 1), (128, 1), (255, 1), (128, 1), (255, 1)])},
                     [ycbcr_subsampled_strip(rgb, 2, 2)]),
           "uncompressed YCbCr 2x2 with Orientation=6")
    ycc_tags = {258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [6]), 277: (3, [3]), 278: (4, [h]),
                284: (3, [1]), 530: (3, [2, 2]), 532: (5, [(0, 1), (255, 1), (128, 1), (255, 1), (128, 1), (255, 1)])}
    FX.add(A + "ycbcr_deflate_subsampled_22_45x29.tif",
           tiff_file(w, h, {**ycc_tags, 259: (3, [8])}, [zlib.compress(ycbcr_subsampled_strip(rgb, 2, 2), 9)]),
           "deflate-compressed YCbCr 2x2 subsampled data units (libtiff path)")
    # bilevel
    bw = np.asarray(photo("camera", w, h, "L").convert("1"))
    FX.add(A + "bilevel_raw_minisblack_45x29.tif", tif(bw, photometric="minisblack"), "1-bit uncompressed min-is-black")
    FX.add(A + "bilevel_raw_miniswhite_45x29.tif", tif(~bw, photometric="miniswhite"), "1-bit uncompressed min-is-white")
    mw = tif(~bw, photometric="miniswhite")
    mb = tif(bw, photometric="minisblack")
    FX.add(A + "bilevel_g3_1d_miniswhite_45x29.tif", tiffcp(mw, "-c", "g3:1d"), "CCITT G3 1-D, min-is-white")
    FX.add(A + "bilevel_g3_2d_fill_miniswhite_45x29.tif", tiffcp(mw, "-c", "g3:2d:fill"), "CCITT G3 2-D with fill, min-is-white")
    FX.add(A + "bilevel_g4_miniswhite_45x29.tif", tiffcp(mw, "-c", "g4"), "CCITT G4, min-is-white")
    FX.add(A + "bilevel_g3_minisblack_45x29.tif", tiffcp(mb, "-c", "g3"), "CCITT G3, min-is-black")
    FX.add(A + "bilevel_g4_minisblack_45x29.tif", tiffcp(mb, "-c", "g4"), "CCITT G4, min-is-black")
    FX.add(A + "bilevel_pillow_group4_45x29.tif",
           pil_bytes(photo("camera", w, h, "L").convert("1"), "TIFF", compression="group4"), "Pillow (libtiff) group4")
    FX.add(A + "bilevel_pillow_ccitt_rle_45x29.tif",
           pil_bytes(photo("camera", w, h, "L").convert("1"), "TIFF", compression="tiff_ccitt"),
           "Pillow (libtiff) CCITT modified Huffman RLE (compression 2)")
    FX.add(A + "bilevel_fillorder2_45x29.tif", tiffcp(mb, "-f", "lsb2msb"), "1-bit FillOrder=2 (LSB first)")
    FX.add(A + "bilevel_packbits_45x29.tif", tif(bw, photometric="minisblack", compression="packbits"), "1-bit PackBits")
    # low bit depths, 12-bit, 16-bit, 32-bit
    FX.add(A + "gray2bit_45x29.tif", tif((gray >> 6).astype(np.uint8), photometric="minisblack", bitspersample=2),
           "2-bit gray")
    FX.add(A + "gray4bit_45x29.tif", tif((gray >> 4).astype(np.uint8), photometric="minisblack", bitspersample=4),
           "4-bit gray")
    FX.add(A + "gray4bit_miniswhite_45x29.tif",
           tif((15 - (gray >> 4)).astype(np.uint8), photometric="miniswhite", bitspersample=4), "4-bit gray min-is-white")
    g16 = (gray.astype(np.uint16) * 257 + ramp(w, h, 200)).astype(np.uint16)
    FX.add(A + "gray12bit_45x29.tif", tif((g16 >> 4).astype(np.uint16), photometric="minisblack", bitspersample=12),
           "12-bit gray (packed)")
    FX.add(A + "gray16_le_45x29.tif", tif(g16, photometric="minisblack", byteorder="<"), "16-bit gray little-endian")
    FX.add(A + "gray16_be_45x29.tif", tif(g16, photometric="minisblack", byteorder=">"), "16-bit gray big-endian")
    FX.add(A + "gray16_lzw_predictor2_45x29.tif",
           tif(g16, photometric="minisblack", compression="lzw", predictor=2), "16-bit gray LZW + predictor 2")
    FX.add(A + "gray16_signed_45x29.tif", tif((g16.astype(np.int32) - 32768).astype(np.int16), photometric="minisblack"),
           "16-bit signed gray (SampleFormat 2)")
    rgb16 = (rgb.astype(np.uint16) * 257 + ramp(w, h, 100)[..., None]).astype(np.uint16)
    FX.add(A + "rgb16_45x29.tif", tif(rgb16, photometric="rgb"), "16-bit RGB")
    FX.add(A + "rgb16_be_45x29.tif", tif(rgb16, photometric="rgb", byteorder=">"), "16-bit RGB big-endian")
    rgba16 = np.dstack([rgb16, (alpha_mask(w, h).astype(np.uint16) * 257)])
    FX.add(A + "rgba16_unassoc_45x29.tif", tif(rgba16, photometric="rgb", extrasamples=["unassalpha"]),
           "16-bit RGBA, unassociated alpha")
    i32 = (gray.astype(np.int32) * 1000 - 50000)
    FX.add(A + "gray_int32_45x29.tif", tif(i32, photometric="minisblack"), "32-bit signed int gray (values -50000..205000)")
    FX.add(A + "gray_int32_small_values_45x29.tif", tif(gray.astype(np.int32), photometric="minisblack"),
           "32-bit int gray, values 0..255")
    FX.add(A + "gray_uint32_45x29.tif", tif(gray.astype(np.uint32) * 16843009, photometric="minisblack"),
           "32-bit unsigned int gray (full range)")
    f32 = gray.astype(np.float32) / 255.0
    FX.add(A + "gray_float32_unit_45x29.tif", tif(f32, photometric="minisblack"), "32-bit float gray in [0, 1]")
    FX.add(A + "gray_float32_0_255_45x29.tif", tif(gray.astype(np.float32) + 0.5, photometric="minisblack"),
           "32-bit float gray in [0.5, 255.5]")
    FX.add(A + "gray_float32_predictor3_45x29.tif",
           tif(f32 * 300 - 20, photometric="minisblack", compression="adobe_deflate", predictor=3),
           "32-bit float gray, deflate + floating-point predictor 3, values -20..280")
    FX.add(A + "gray_float64_45x29.tif", tif(gray.astype(np.float64), photometric="minisblack"), "64-bit float gray")
    FX.add(A + "gray_float16_45x29.tif", tif((gray / 255).astype(np.float16), photometric="minisblack"), "16-bit float gray")
    FX.add(A + "gray8_signed_45x29.tif", tif((gray.astype(np.int16) - 128).astype(np.int8), photometric="minisblack"),
           "8-bit signed gray")
    # palette
    pidx, ppal = quantized("ihc", w, h, 256)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, : len(ppal)] = (ppal.T.astype(np.uint16) * 257)
    FX.add(A + "palette8_45x29.tif", tif(pidx, photometric="palette", colormap=cmap), "8-bit palette (ColorMap)")
    pidx4, ppal4 = quantized("ihc", w, h, 16)
    cmap4 = np.zeros((3, 16), np.uint16)
    cmap4[:, : len(ppal4)] = ppal4.T.astype(np.uint16) * 257
    FX.add(A + "palette4_45x29.tif",
           tiff_file(w, h, {258: (3, [4]), 259: (3, [1]), 262: (3, [3]), 277: (3, [1]), 278: (4, [h]),
                            320: (3, cmap4.reshape(-1).tolist())}, [b"".join(pack_rows(pidx4[:, :, None], 4))]),
           "4-bit palette (hand-written)")
    FX.add(A + "palette8_pillow_45x29.tif",
           pil_bytes(photo("ihc", w, h).quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE), "TIFF"),
           "Pillow-saved P")
    # multi-page
    buf = io.BytesIO()
    import tifffile

    with tifffile.TiffWriter(buf) as tw:
        tw.write(rgb, photometric="rgb", metadata=None, software=False)
        tw.write(np.asarray(photo("coffee", 33, 21)), photometric="rgb", metadata=None, software=False)
    FX.add(A + "multipage_2_45x29.tif", buf.getvalue(), "two pages of different sizes, first page")
    FX.add(A + "multipage_pillow_45x29.tif",
           pil_bytes(photo("ihc", w, h), "TIFF", save_all=True, append_images=[photo("coffee", w, h)]),
           "Pillow save_all two pages")
    # CIELAB, CMYK
    lab = photo("ihc", w, h).convert("LAB")
    lab.info = {}  # convert("LAB") attaches a freshly made (time-stamped) LAB ICC profile
    FX.add(A + "cielab_pillow_45x29.tif", pil_bytes(lab, "TIFF"), "Pillow LAB (Photometric CIELab, signed a/b)")
    FX.add(A + "cielab_tifffile_45x29.tif", tif(np.asarray(lab), photometric="cielab"), "tifffile Photometric CIELab")
    cmyk = np.asarray(photo("ihc", w, h).convert("CMYK"))
    FX.add(A + "cmyk_raw_45x29.tif", tif(cmyk, photometric="separated"), "uncompressed CMYK (Photometric 5)")
    FX.add(A + "cmyk_lzw_pillow_45x29.tif", pil_bytes(photo("ihc", w, h).convert("CMYK"), "TIFF", compression="tiff_lzw"),
           "Pillow CMYK LZW")
    FX.add(A + "cmyk_jpeg_tiffcp_45x29.tif", tiffcp(tif(cmyk, photometric="separated"), "-c", "jpeg:90", "-r", "16"),
           "libtiff JPEG-in-TIFF CMYK")
    FX.add(A + "cmyk_jpeg_tifffile_45x29.tif", tif(cmyk, photometric="separated", compression="jpeg"),
           "tifffile JPEG-in-TIFF CMYK")
    # alpha and planar
    FX.add(A + "rgba8_unassoc_45x29.tif", tif(rgba, photometric="rgb", extrasamples=["unassalpha"]),
           "RGBA unassociated alpha (ExtraSamples 2)")
    FX.add(A + "rgba8_assoc_45x29.tif", tif(rgba, photometric="rgb", extrasamples=["assocalpha"]),
           "RGBa associated (premultiplied) alpha (ExtraSamples 1)")
    FX.add(A + "rgbx8_unspecified_extra_45x29.tif", tif(rgba, photometric="rgb", extrasamples=["unspecified"]),
           "RGB + unspecified extra sample (ExtraSamples 0)")
    la = np.dstack([gray, alpha_mask(w, h)])
    FX.add(A + "la8_45x29.tif", tif(la, photometric="minisblack", extrasamples=["unassalpha"]), "gray + alpha")
    FX.add(A + "rgb8_planar_45x29.tif", tif(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"),
           "PlanarConfiguration 2 (RRR GGG BBB)")
    FX.add(A + "rgba8_planar_45x29.tif",
           tif(np.moveaxis(rgba, -1, 0), photometric="rgb", planarconfig="separate", extrasamples=["unassalpha"]),
           "planar RGBA (unassociated alpha)")
    FX.add(A + "rgb8_planar_lzw_45x29.tif",
           tif(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate", compression="lzw"),
           "planar RGB, LZW")
    FX.add(A + "rgb16_planar_45x29.tif", tif(np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate"),
           "planar 16-bit RGB")
    FX.add(A + "rgb8_tiled_45x29.tif", tif(rgb, photometric="rgb", tile=(16, 16)), "tiled 16x16 contiguous")
    FX.add(A + "rgb8_tiled_planar_45x29.tif",
           tif(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate", tile=(16, 16)), "tiled planar")
    FX.add(A + "rgb8_tiled_deflate_45x29.tif", tif(rgb, photometric="rgb", tile=(32, 16), compression="adobe_deflate"),
           "tiled 32x16 (wider than tall) deflate")
    FX.add(A + "rgba8_tiled_45x29.tif", tif(rgba, photometric="rgb", tile=(16, 16), extrasamples=["unassalpha"]),
           "tiled RGBA")
    FX.add(A + "gray8_tiled_lzw_45x29.tif", tif(gray, photometric="minisblack", tile=(16, 16), compression="lzw"),
           "tiled gray LZW")
    # orientation tag
    for n in (3, 6, 8):
        FX.add(A + f"rgb8_orientation_{n}_45x29.tif",
               tif(rgb, photometric="rgb", extratags=[(274, 3, 1, n, True)]), f"uncompressed RGB, Orientation={n}")
    FX.add(A + "jpeg_ycbcr_orientation_6_45x29.tif",
           tif(rgb, photometric="rgb", compression="jpeg", extratags=[(274, 3, 1, 6, True)]),
           "JPEG-in-TIFF YCbCr, Orientation=6")
    FX.add(A + "rgb8_tiled_orientation_6_45x29.tif",
           tif(rgb, photometric="rgb", tile=(16, 16), extratags=[(274, 3, 1, 6, True)]), "tiled RGB, Orientation=6")
    FX.add(A + "rgba8_orientation_8_45x29.tif",
           tif(rgba, photometric="rgb", extrasamples=["unassalpha"], extratags=[(274, 3, 1, 8, True)]),
           "RGBA, Orientation=8")
    FX.add(A + "gray8_lzw_orientation_5_45x29.tif",
           tif(gray, photometric="minisblack", compression="lzw", extratags=[(274, 3, 1, 5, True)]),
           "gray LZW, Orientation=5")
    FX.add(A + "gray8_raw_orientation_6_45x29.tif",
           tif(gray, photometric="minisblack", extratags=[(274, 3, 1, 6, True)]),
           "uncompressed gray, Orientation=6 (memory-mapped when opened by path)")
    FX.add(A + "gray16_raw_orientation_3_45x29.tif",
           tif(g16, photometric="minisblack", extratags=[(274, 3, 1, 3, True)]),
           "uncompressed 16-bit gray, Orientation=3 (memory-mapped when opened by path)")
    FX.add(A + "cmyk_raw_orientation_8_45x29.tif",
           tif(cmyk, photometric="separated", extratags=[(274, 3, 1, 8, True)]),
           "uncompressed CMYK, Orientation=8 (memory-mapped when opened by path)")
    FX.add(A + "palette8_raw_orientation_2_45x29.tif",
           tif(pidx, photometric="palette", colormap=cmap, extratags=[(274, 3, 1, 2, True)]),
           "uncompressed palette, Orientation=2 (memory-mapped when opened by path)")
    FX.add(A + "rgba8_lzw_orientation_8_45x29.tif",
           tif(rgba, photometric="rgb", extrasamples=["unassalpha"], compression="lzw", extratags=[(274, 3, 1, 8, True)]),
           "RGBA LZW, Orientation=8 (decoded by libtiff, not mapped)")
    FX.add(A + "bilevel_g4_orientation_6_45x29.tif",
           tiffcp(tif(~bw, photometric="miniswhite", extratags=[(274, 3, 1, 6, True)]), "-c", "g4"),
           "CCITT G4 with Orientation=6")
    FX.add(A + "rgb8_17x9.tif", tif(np.asarray(photo("ihc", 17, 9)), photometric="rgb"), "RGB 17x9")
    FX.add(A + "rgb8_1x1.tif", tif(np.asarray(photo("ihc", 1, 1)), photometric="rgb"), "RGB 1x1")
    # damaged
    good = tif(rgb, photometric="rgb", compression="lzw")
    FX.add(A + "truncated_half_lzw_45x29.tif", truncate(good, 0.5), "LZW data cut in half (IFD at the end is lost)")
    raw_good = tiff_file(w, h, {258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [2]), 277: (3, [3]), 278: (4, [h])},
                         [rgb.tobytes()])
    FX.add(A + "strip_past_eof_45x29.tif",
           tiff_file(w, h, {258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [2]), 277: (3, [3]), 278: (4, [h])},
                     [rgb.tobytes()[: len(rgb.tobytes()) // 2]]).replace(
               struct.pack("<HHII", 279, 4, 1, len(rgb.tobytes()) // 2), struct.pack("<HHII", 279, 4, 1, len(rgb.tobytes()))),
           "StripByteCounts claims more bytes than the file holds")
    FX.add(A + "handwritten_rgb8_45x29.tif", raw_good, "hand-written minimal uncompressed RGB (reference for the writer)")
    FX.add(A + "truncated_header.tif", good[:6], "only the TIFF header")
    tiff_bigtiff_and_prefixes(rgb, gray, rgba, g16, rgb16)


def with_magic(data: bytes, magic: bytes) -> bytes:
    """The same file under other first four bytes (same byte order, same directory offset)."""
    assert data[:2] == magic[:2], (data[:4], magic)
    return magic + data[4:]


def tiff_bigtiff_and_prefixes(rgb, gray, rgba, g16, rgb16) -> None:
    """BigTIFF (8-byte offsets and counts, 20-byte entries) and the other headers Pillow's
    TiffImagePlugin.PREFIXES accepts. Pillow takes a file for BigTIFF when its third byte
    is 43, which only the little-endian `II+\\0` has: `MM\\0+` is read as classic TIFF with
    the directory offset in bytes 4-8. `MM*\\0` and `II\\0*` are read as classic TIFF of
    that byte order; libtiff rejects their version number, so only uncompressed ones
    (Pillow's own raw decoder) open."""
    A = "tiff/"
    big = dict(bigtiff=True)
    FX.add(A + "bigtiff_rgb8_raw_strips_45x29.tif", tif(rgb, photometric="rgb", rowsperstrip=5, **big),
           "BigTIFF uncompressed RGB, 6 strips of 5 rows (LONG8 StripOffsets)")
    FX.add(A + "bigtiff_gray8_raw_45x29.tif", tif(gray, photometric="minisblack", **big),
           "BigTIFF uncompressed gray")
    FX.add(A + "bigtiff_rgba8_tiled_raw_45x29.tif",
           tif(rgba, photometric="rgb", tile=(16, 16), extrasamples=["unassalpha"], **big),
           "BigTIFF uncompressed tiled RGBA (unassociated alpha)")
    FX.add(A + "bigtiff_rgb16_raw_45x29.tif", tif(rgb16, photometric="rgb", **big), "BigTIFF uncompressed 16-bit RGB")
    FX.add(A + "bigtiff_rgb8_lzw_predictor2_45x29.tif",
           tif(rgb, photometric="rgb", compression="lzw", predictor=2, **big), "BigTIFF LZW + predictor 2")
    FX.add(A + "bigtiff_gray16_deflate_45x29.tif", tif(g16, photometric="minisblack", compression="adobe_deflate", **big),
           "BigTIFF 16-bit gray, deflate")
    FX.add(A + "bigtiff_rgb8_tiled_deflate_45x29.tif",
           tif(rgb, photometric="rgb", tile=(32, 16), compression="adobe_deflate", **big), "BigTIFF tiled 32x16 deflate")
    FX.add(A + "bigtiff_rgba8_zstd_45x29.tif",
           tif(rgba, photometric="rgb", extrasamples=["unassalpha"], compression="zstd", **big), "BigTIFF RGBA, ZSTD")
    FX.add(A + "bigtiff_jpeg_ycbcr_45x29.tif", tif(rgb, photometric="rgb", compression="jpeg", **big),
           "BigTIFF JPEG-in-TIFF YCbCr 4:2:0")
    FX.add(A + "bigtiff_jpeg_tiled_orientation_6_45x29.tif",
           tif(rgb, photometric="rgb", compression="jpeg", tile=(16, 16), extratags=[(274, 3, 1, 6, True)], **big),
           "BigTIFF tiled JPEG-in-TIFF, Orientation=6")
    big_raw = tif(rgb, photometric="rgb", **big)
    # The entry count is the first 8 bytes of the directory (tifffile puts it at 16);
    # Pillow reads entries until the file ends, keeping the first of each tag.
    assert big_raw[8:16] == struct.pack("<Q", 16)
    FX.add(A + "bigtiff_entry_count_2e60_45x29.tif", big_raw[:16] + struct.pack("<Q", 2**60) + big_raw[24:],
           "BigTIFF uncompressed RGB whose directory claims 2^60 entries")
    FX.add(A + "bigtiff_truncated_half_lzw_45x29.tif", truncate(tif(rgb, photometric="rgb", compression="lzw", **big), 0.5),
           "BigTIFF LZW cut in half")
    FX.add(A + "bigtiff_be_rgb8_raw_45x29.tif", tif(rgb, photometric="rgb", byteorder=">", **big),
           "big-endian BigTIFF (MM\\0+): Pillow reads it as classic TIFF and finds no directory")
    FX.add(A + "bigtiff_be_rgb8_lzw_45x29.tif", tif(rgb, photometric="rgb", compression="lzw", byteorder=">", **big),
           "big-endian BigTIFF, LZW")
    be_raw = tif(rgb, photometric="rgb", byteorder=">")
    be_lzw = tif(rgb, photometric="rgb", compression="lzw", byteorder=">")
    FX.add(A + "prefix_mm002b_classic_raw_45x29.tif", with_magic(be_raw, b"MM\x00\x2b"),
           "classic big-endian TIFF under the MM\\0+ magic: Pillow reads it as classic, uncompressed")
    FX.add(A + "prefix_mm002b_classic_lzw_45x29.tif", with_magic(be_lzw, b"MM\x00\x2b"),
           "classic big-endian TIFF under the MM\\0+ magic, LZW (libtiff reads a BigTIFF header)")
    FX.add(A + "prefix_mm2a00_raw_45x29.tif", with_magic(be_raw, b"MM\x2a\x00"),
           "MM*\\0 (version bytes swapped), uncompressed RGB big-endian")
    FX.add(A + "prefix_mm2a00_lzw_45x29.tif", with_magic(be_lzw, b"MM\x2a\x00"), "MM*\\0, LZW")
    FX.add(A + "prefix_ii002a_raw_45x29.tif", with_magic(tif(gray, photometric="minisblack"), b"II\x00\x2a"),
           "II\\0* (version bytes swapped), uncompressed gray little-endian")
    FX.add(A + "prefix_ii002a_lzw_45x29.tif", with_magic(tif(rgb, photometric="rgb", compression="lzw"), b"II\x00\x2a"),
           "II\\0*, LZW")


# ----------------------------------------------------------------------------
# hostile


def prng_bytes(seed: str, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def hostile_family() -> None:
    A = "hostile/"
    for ext in ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]:
        FX.add(A + f"zero_bytes_{ext}.{ext}", b"", f"zero-byte file named .{ext}")
    for ext in ["jpg", "png", "webp", "gif", "bmp", "tif"]:
        FX.add(A + f"random_bytes_{ext}.{ext}", prng_bytes(ext, 4096), f"4096 pseudo-random bytes named .{ext}")
    FX.add(A + "text_file.jpg", b"This is not an image, just some text.\n" * 3, "a text file named .jpg")
    FX.add(A + "html_error_page.png",
           b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n",
           "an HTML error page named .png (common in scraped data sets)")
    o = photo("chelsea", 33, 21)
    FX.add(A + "png_named_jpg.jpg", pil_bytes(o, "PNG"), "a PNG file with a .jpg extension (Pillow sniffs content)")
    FX.add(A + "jpeg_named_png.png", pil_bytes(o, "JPEG", quality=90), "a JPEG file with a .png extension")
    FX.add(A + "webp_named_gif.gif", pil_bytes(o, "WEBP", quality=90), "a WebP file with a .gif extension")
    # decompression bombs: headers claiming 50000x50000
    big = 50000
    ihdr = struct.pack(">IIBBBBB", big, big, 8, 2, 0, 0, 0)
    FX.add(A + "bomb_png_50000x50000.png",
           b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""),
           "PNG header claiming 50000x50000 RGB")
    FX.add(A + "bomb_gif_50000x50000.gif",
           gif_bytes((big, big), [{"indices": np.zeros((1, 1), np.uint8)}], gct=np.zeros((2, 3), np.uint8))
           .replace(b",\x00\x00\x00\x00\x01\x00\x01\x00", b"," + struct.pack("<HHHH", 0, 0, big, big)),
           "GIF screen and frame claiming 50000x50000")
    FX.add(A + "bomb_bmp_50000x50000.bmp", bmp_bytes(big, big, 24, b"\x00" * 64), "BMP header claiming 50000x50000 24-bit")
    jp = bytearray(pil_bytes(photo("chelsea", 16, 16), "JPEG", quality=50))
    sof = jp.index(b"\xff\xc0")
    jp[sof + 5 : sof + 9] = struct.pack(">HH", big, big)
    FX.add(A + "bomb_jpg_50000x50000.jpg", bytes(jp), "JPEG SOF0 claiming 50000x50000")
    FX.add(A + "bomb_tif_50000x50000.tif",
           tiff_file(big, big, {258: (3, [8]), 259: (3, [1]), 262: (3, [1]), 277: (3, [1]), 278: (4, [big])}, [b"\x00" * 64]),
           "TIFF claiming 50000x50000 gray")
    vp8l = b"\x2f" + struct.pack("<I", (16383) | (16383 << 14))  # 16384x16384, no alpha, version 0
    body = b"VP8L" + struct.pack("<I", len(vp8l) + 16) + vp8l + bytes(16)
    FX.add(A + "bomb_webp_16384x16384.webp", b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body,
           "WebP lossless header claiming 16384x16384 (the format's maximum)")
    # just over Pillow's warning threshold (89,478,485 pixels): decodes with a DecompressionBombWarning
    side = 9460
    row = bytes([0]) + bytes(math.ceil(side / 8))
    stripe = bytes([0]) + b"\xff" * math.ceil(side / 8)
    raw = b"".join(stripe if y % 1000 == 0 else row for y in range(side))
    FX.add(A + "bomb_warning_9460x9460_1bit.png",
           b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""),
           "1-bit PNG with 89,491,600 pixels: just over MAX_IMAGE_PIXELS, so a warning, not an error")
    FX.add(A + "zero_width.png",
           b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0))
           + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b""), "PNG with width 0")
    idat_bad = bytearray(zlib.compress(bytes(37 * 3 + 1) * 23))
    idat_bad[4:12] = b"\xde\xad\xbe\xef\xde\xad\xbe\xef"
    FX.add(A + "png_corrupt_zlib_valid_crc.png",
           b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 37, 23, 8, 2, 0, 0, 0))
           + png_chunk(b"IDAT", bytes(idat_bad)) + png_chunk(b"IEND", b""),
           "PNG whose IDAT zlib data is corrupt but CRCs are right")
    FX.add(A + "bmp_negative_width.bmp", bmp_bytes(-37, 23, 24, bytes(37 * 3 * 23 + 23)), "BMP with a negative width")
    FX.add(A + "jpeg_only_eoi.jpg", b"\xff\xd8\xff\xd9", "JPEG: SOI immediately followed by EOI")


# ----------------------------------------------------------------------------
# probing: what a transformers user gets


def probe(rel: str) -> dict:
    from transformers.image_transforms import convert_to_rgb

    path = OUT / rel
    rec: dict = {"opens": False}
    stage = "open"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            im = Image.open(path)
            rec["pillow_format"] = im.format
            rec["mode"] = im.mode
            stage = "load"
            im.load()
            stage = "exif_transpose"
            t = ImageOps.exif_transpose(im)
            stage = "convert_to_rgb"
            composited = "A" in t.getbands() or t.info.get("transparency") is not None
            arr = np.asarray(convert_to_rgb(t, return_numpy=True))
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, arr.shape
            plain = np.asarray(t.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - every refusal is a result
            msg = str(e).replace(str(OUT) + "/", "")
            return {"opens": False, "stage": stage, "error": f"{type(e).__name__}: {msg}",
                    **({"warnings": _warns(caught)} if caught else {})}
    h, w, _ = arr.shape
    rec = {"opens": True, "pillow_format": rec["pillow_format"], "mode": rec["mode"], "size": [w, h]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # side facts from fresh instances, so they cannot disturb the truth pipeline above
        with Image.open(path) as again:
            # before load: a TIFF applies and drops its Orientation tag while loading
            rec["orientation"] = again.getexif().get(0x0112)
        try:
            with Image.open(path) as again:
                rec["frames"] = getattr(again, "n_frames", 1)
        except Exception as e:  # noqa: BLE001
            rec["frames"] = None
            rec["frames_error"] = f"{type(e).__name__}: {e}"
        # the same pipeline on Image.open(BytesIO(bytes)): no memory mapping of uncompressed data
        try:
            b = Image.open(io.BytesIO(path.read_bytes()))
            b.load()
            b_arr = np.asarray(convert_to_rgb(ImageOps.exif_transpose(b), return_numpy=True))
            if b_arr.shape != arr.shape or b_arr.tobytes() != arr.tobytes():
                rec["bytesio_size"] = [b_arr.shape[1], b_arr.shape[0]]
                rec["bytesio_sha256"] = sha(b_arr.tobytes())
        except Exception as e:  # noqa: BLE001
            rec["bytesio_error"] = f"{type(e).__name__}: {e}"
    rec["alpha_composited"] = composited
    data = arr.tobytes()
    rec["sha256"] = sha(data)
    rec["_data"] = data
    if plain.tobytes() != data:
        rec["load_image_sha256"] = sha(plain.tobytes())
    if caught:
        rec["warnings"] = _warns(caught)
    return rec


def _warns(caught) -> list[str]:
    out = []
    for w in caught:
        s = f"{w.category.__name__}: {w.message}".replace(str(OUT) + "/", "")
        if s not in out:
            out.append(s)
    return out


def library_versions() -> dict:
    libs = {}
    for name in ["jpg", "libjpeg_turbo", "libtiff", "webp", "zlib", "zlib_ng", "jpg_2000", "avif", "freetype2",
                 "littlecms2", "libimagequant", "raqm"]:
        try:
            v = features.version(name)
        except ValueError:
            v = None
        if v is not None:
            libs[name] = v
    return libs


def debian_versions() -> dict:
    out = {}
    for pkg in ["libjpeg-turbo-progs", "libtiff-tools", "webp"]:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        out[pkg] = p.stdout.decode() if p.returncode == 0 else None
    return out


def write_manifest(families_done: list[str]) -> dict:
    import transformers

    entries = []
    raw_names = set()
    for it in FX.items:
        rec = probe(it["file"])
        data = rec.pop("_data", None)
        entry = {"file": it["file"], "format": it["format"], "case": it["case"]}
        entry.update(rec)
        if rec["opens"]:
            w, h = rec["size"]
            want_raw = it["raw"] if it["raw"] is not None else (w * h <= RAW_MAX_PIXELS)
            if want_raw:
                raw_rel = str(Path(it["file"]).with_suffix(".rgb"))
                assert raw_rel not in raw_names
                raw_names.add(raw_rel)
                (OUT / raw_rel).write_bytes(data)
                entry["raw"] = raw_rel
            else:
                entry["raw"] = None
            # keep the documented key order
            order = ["file", "format", "case", "opens", "pillow_format", "mode", "size", "orientation", "frames",
                     "frames_error", "alpha_composited", "sha256", "raw", "load_image_sha256", "bytesio_size",
                     "bytesio_sha256", "bytesio_error", "warnings"]
            entry = {k: entry[k] for k in order if k in entry}
        entries.append(entry)
    src_dir = skimage_data_dir()
    manifest = {
        "pillow": __import__("PIL").__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "scikit_image_sources": {name: {"file": fn, "sha256": sha((src_dir / fn).read_bytes())}
                                 for name, fn in SOURCES.items()},
        "libraries": library_versions(),
        "debian_tools": debian_versions(),
        "truth": "im=Image.open(p); im.load(); im=ImageOps.exif_transpose(im); "
                 "arr=transformers.image_transforms.convert_to_rgb(im, return_numpy=True); sha256(arr.tobytes())",
        "families": families_done,
        "files": entries,
    }
    lines = ["{"]
    head = {k: v for k, v in manifest.items() if k != "files"}
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)},")
    lines.append('  "files": [')
    lines.append(",\n".join("    " + json.dumps(e) for e in entries))
    lines.append("  ]")
    lines.append("}")
    (OUT / "manifest.json").write_text("\n".join(lines) + "\n")
    json.loads((OUT / "manifest.json").read_text())  # sanity
    return manifest


FAMILIES = [
    ("jpeg", jpeg_family),
    ("webp", webp_family),
    ("png", png_family),
    ("gif", gif_family),
    ("bmp", bmp_family),
    ("tiff", tiff_family),
    ("hostile", hostile_family),
]


def check_versions() -> None:
    import PIL
    import transformers

    got = {"pillow": PIL.__version__, "numpy": np.__version__, "transformers": transformers.__version__}
    if got != EXPECTED:
        sys.exit(f"version mismatch: want {EXPECTED}, have {got}")
    for tool in ["cjpeg", "cwebp", "webpmux", "tiffcp"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install libjpeg-turbo-progs libtiff-tools webp")


def main() -> None:
    check_versions()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    done = []
    for name, fn in FAMILIES:
        fn()
        done.append(name)
    manifest = write_manifest(done)
    write_readme(manifest)
    n_open = sum(1 for e in manifest["files"] if e["opens"])
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(manifest['files'])} image files, {n_open} open, {len(manifest['files']) - n_open} refused; "
          f"{total} bytes under {OUT.relative_to(REPO)}")


FAMILY_NOTES = {
    "jpeg": "Pillow and cjpeg encoders: 4:4:4/4:2:2/4:2:0/4:4:0/4:1:1/4:1:0 and two non-standard per-component "
            "samplings at 301x217, 93x171, 63x47, 17x9, 33x1, 1x33, 2x2, 1x1; progressive, optimized Huffman, "
            "arithmetic, restart intervals, q50/90/100, grayscale, CMYK (Pillow, Adobe), YCCK, RGB-colourspace "
            "(cjpeg -rgb, keep_rgb), lossless SOF3, 12-bit (refused), EXIF Orientation 0-9 (LE and BE EXIF), XMP "
            "orientation (attribute and element), EXIF-vs-XMP precedence, ICC, COM, MPO, extraneous bytes, "
            "trailing garbage, missing EOI and truncations",
    "webp": "lossy q50/q75/q90 (Pillow's libwebp 1.6.0 and Debian cwebp 1.2.4, sharp_yuv), lossless, lossy+alpha "
            "(lossless and quantised alpha), lossless+alpha (-exact), EXIF Orientation 3/6/8, XMP orientation, "
            "ICC, animated lossy/lossless and an animation whose first frame covers part of the canvas, odd "
            "sizes down to 1x1, truncations",
    "png": "8-bit RGB/RGBA/L/LA, palette (8/4/2/1-bit) with and without tRNS, 1/2/4-bit gray, 16-bit "
           "RGB/RGBA/gray/gray+alpha, tRNS on 16-bit gray, 16-bit RGB, 8-bit RGB, 8-bit and 4-bit gray, all five "
           "filter types, split IDAT, Adam7 (incl. 1x1..9x3 with empty passes), eXIf (before and after IDAT), XMP "
           "iTXt, ImageMagick 'Raw profile type exif' (zTXt and tEXt), gAMA, APNG (incl. default image), bad "
           "CRCs, missing IEND, truncations",
    "gif": "Pillow-written (interlaced by default, non-interlaced, from RGB, from L), hand-written with a "
           "literal-code LZW: global table, local table only, local overriding global, no colour table, 87a, "
           "transparency, interlace, first frame offset on a larger screen (with background / transparent "
           "background), frame larger than the screen, animations, 1x1, truncations, missing trailer",
    "bmp": "hand-written: 1/4/8-bit palettes (b/w, colour, gray, short palette), 16-bit 5-5-5 (BI_RGB and "
           "BITFIELDS) and 5-6-5 (BITFIELDS, V5), 24-bit, 32-bit BI_RGB with junk 4th byte, 32-bit BITFIELDS with "
           "and without alpha, swapped masks, 4-4-4-4 masks, top-down, RLE8/RLE4 with every escape (and early "
           "end-of-bitmap, top-down), headers of 12 (OS/2 v1), 16 (OS/2 short), 40, 52, 56, 64 (OS/2 v2), 108 "
           "(V4) and 124 (V5) bytes, planes=2, BI_PNG/BI_JPEG, Pillow-written 1/L/RGB, truncations",
    "tiff": "uncompressed LE/BE, strips, LZW (+predictor 2, LE/BE), deflate (8 and 32946), PackBits, LZMA, ZSTD, "
            "WebP (refused: Pillow's libtiff lacks it), JPEG-in-TIFF (YCbCr 4:2:0/4:2:2 with per-strip streams, "
            "libtiff with JPEGTables, RGB, gray, tiled, CMYK), old-style JPEG, raw and deflate subsampled YCbCr, "
            "1-bit (raw, G3 1-D/2-D, G4, CCITT RLE, PackBits, FillOrder 2, min-is-white/black), 2/4/12/16-bit "
            "gray, signed 8/16-bit, 32-bit int/uint, float16/32/64 (+predictor 3), 16-bit RGB/RGBA, palettes "
            "(8/4-bit), multi-page, CIELab, CMYK, RGBA associated/unassociated/unspecified, gray+alpha, planar "
            "(8 and 16-bit, with alpha), tiled (contiguous/planar), Orientation on many layouts, truncations; "
            "BigTIFF (little-endian: uncompressed strips/tiles, RGB/gray/RGBA/16-bit, LZW, deflate, ZSTD, JPEG, tiled "
            "JPEG with Orientation, a 2^60-entry count, truncated; big-endian: refused), the odd headers `MM\\0+` "
            "(over a classic file), `MM*\\0` and `II\\0*` (uncompressed and LZW)",
    "hostile": "zero-byte files (every extension), pseudo-random bytes, text and HTML named as images, content/"
               "extension mismatches, 50000x50000 headers (PNG/GIF/BMP/JPEG/TIFF) and a 16384x16384 WebP "
               "(DecompressionBombError), a 9460x9460 1-bit PNG just over the warning limit, zero width, corrupt "
               "zlib with valid CRCs, negative BMP width, SOI+EOI",
}


PILLOW_NOTES = """
## Pillow 13.0.0 behaviours these fixtures pin down

- Conversions to RGB: `I;16`/`I;16B` and `I` clip to 0..255 (no scaling: 16-bit gray comes out nearly
  white); `F` clips and truncates toward zero (118.8 -> 118, -1.2 -> 0); `1` maps 0/1 to 0/255; 1/2/4-bit
  gray is scaled to 0..255 on load (mode `L`); 16-bit RGB/RGBA PNG and TIFF keep the high byte; 16-bit
  gray+alpha PNG opens as `RGBA`; `CMYK` -> RGB is `MULDIV255(255 - C, 255 - K)` per channel (rounded);
  `LAB` is converted colorimetrically, and because its bands are L, A, B, transformers' "A in getbands()"
  test sends it down the alpha path (a no-op: alpha is 255).
- Every 4-component JPEG is read as Adobe-inverted CMYK (`CMYK;I`), with or without an Adobe segment;
  YCCK is converted by libjpeg only when the Adobe segment says transform 2.
- Transparency: `P` with a tRNS/GCE index, `L`/`RGB` with a tRNS colour, `LA`, `RGBA` and `I;16` with tRNS
  take convert_to_rgb's composite-on-white path (`load_image` does not composite: see `load_image_sha256`).
  A tRNS colour on 16-bit RGB never matches (Pillow compares it with the 8-bit pixels), a tRNS value on
  1/2/4-bit gray never matches (the pixels were scaled), 16-bit gray tRNS hits only one pixel here; palette
  tRNS given as bytes also emits a UserWarning.
- Orientation: EXIF 1-8 honoured; 0 and 9 ignored; XMP `tiff:Orientation` is used only when the EXIF block
  has no Orientation; TIFF applies (and drops) its Orientation inside `load()`. Opened by PATH, an
  uncompressed TIFF whose mode can be memory-mapped (L, P, RGBA, CMYK, I;16...) with Orientation 5-8 comes
  out with its stored size and scrambled pixels (the same bytes from a BytesIO are right): see
  `bytesio_sha256`.
- Refused: 12-bit JPEG, JPEG without EOI, truncated JPEG/PNG/GIF/BMP/TIFF/WebP, RLE BMPs whose
  end-of-bitmap comes early ("not enough image data"), BMP 4-4-4-4 masks, BI_PNG/BI_JPEG, the 16-byte
  OS/2 header, WebP-in-TIFF (Pillow's libtiff has no WebP codec), float16/float64 TIFF, uncompressed
  subsampled YCbCr TIFF (the deflate one decodes through libtiff), PNGs with a bad IHDR or ancillary CRC
  (a bad IDAT CRC is ignored), headers over 178,956,970 pixels (DecompressionBombError at open; a negative
  BMP width trips it too). Over 89,478,485 pixels only warns.
- TIFF headers: Pillow accepts `II*\\0`, `MM\\0*`, `II+\\0`, `MM\\0+`, `MM*\\0` and `II\\0*`, but takes a file
  for BigTIFF only when its third byte is 43: little-endian BigTIFF opens, big-endian BigTIFF is read as
  classic TIFF (directory offset from bytes 4-8, normally past the end: "cannot identify image file").
  `MM*\\0`/`II\\0*` open when uncompressed; compressed, libtiff rejects the version ("decoder error -2").
- Decoded but wrong: planar 16-bit RGB TIFF (bytes read as 8-bit samples).
- GIF: no colour table -> mode `L`; a first frame smaller than the screen leaves index 0 (not the
  background index) around it; a frame larger than the screen enlarges the image. Pillow writes interlaced
  GIFs by default. A WebP animation whose first frame covers part of the canvas is black around it.
"""


def write_readme(manifest: dict) -> None:
    rows = []
    for fam, _ in FAMILIES:
        fs = [e for e in manifest["files"] if e["file"].startswith(fam + "/")]
        n_open = sum(e["opens"] for e in fs)
        n_raw = sum(1 for e in fs if e.get("raw"))
        rows.append(f"| {fam}/ | {len(fs)} | {n_open} | {len(fs) - n_open} | {n_raw} | {FAMILY_NOTES[fam]} |")
    libs = ", ".join(f"{k} {v}" for k, v in sorted(manifest["libraries"].items()))
    text = f"""# Pillow decoding fixtures

Generated by `scripts/make_image_fixtures.py` (do not edit by hand; rerun it). Every image file here
is described by one line of `manifest.json`. The recorded truth is what a transformers user gets:

```python
im = Image.open(path); im.load()              # first frame
im = ImageOps.exif_transpose(im)
arr = transformers.image_transforms.convert_to_rgb(im, return_numpy=True)  # HxWx3 uint8
sha256(arr.tobytes())                         # == manifest "sha256"; "raw" names the .rgb file holding arr.tobytes()
```

Pillow {manifest["pillow"]} ({libs}), transformers {manifest["transformers"]}, numpy {manifest["numpy"]}.
Photos: scikit-image's bundled sample images (hashes in the manifest), cropped and Lanczos-resized.

Fields per file: `file`, `format` (the family, or for hostile/ the extension), `case`, `opens`; when it
opens: `pillow_format`, `mode` (right after open), `size` ([w, h] after exif_transpose), `orientation`
(EXIF or XMP orientation as `getexif()` reports it before loading, else null), `frames`,
`alpha_composited` (convert_to_rgb took the composite-on-white path), `sha256`, `raw` (path of a .rgb
file or null), and only when relevant `load_image_sha256` (what `transformers.image_utils.load_image`
gives: exif_transpose + `convert("RGB")`, no compositing), `bytesio_size`/`bytesio_sha256` (result
when the same bytes are opened from a BytesIO instead of a path), `warnings`; when it does not open:
`stage` (open / load / exif_transpose / convert_to_rgb) and `error` ("ExceptionType: message").

| folder | files | Pillow opens | Pillow refuses | .rgb dumps | cases |
| --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n" + PILLOW_NOTES
    (OUT / "README.md").write_text(text)


if __name__ == "__main__":
    main()
