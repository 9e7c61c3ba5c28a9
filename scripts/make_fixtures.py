"""Generate the BLIP reference fixtures used by the Rust tests.

What it makes (everything under ``captioner-cli/tests/fixtures/``; previous outputs
there are deleted first, except README.md, metrics/, train/, shapes-tiny-hf/,
shard-outputs/ and ved/, which other scripts write):

* ``images/``: four small PNG test images (odd size RGB, RGBA with transparency,
  grayscale, tall RGB) drawn with numpy + PIL from a fixed seed, and eleven
  ``photo_*`` files (JPEG: 4:2:0 baseline, 4:2:2 progressive, 4:4:4 q95, CMYK,
  EXIF orientation 6; WebP: lossy, lossy with alpha, lossless; TIFF: LZW RGB,
  JPEG-compressed YCbCr, 16-bit RGB) made from photographs that ship inside the
  scikit-image wheel (``skimage/data/{chelsea,coffee,astronaut}.png``), saved by
  Pillow (the 16-bit TIFF by tifffile: Pillow cannot write 16-bit RGB).
* ``tiny-a/`` and ``tiny-b/``: two tiny randomly initialised
  ``BlipForConditionalGeneration`` checkpoints (different shapes), saved with
  ``save_pretrained`` (safetensors) together with a ``BlipProcessor`` (PIL image
  processor + a tiny lower-cased BERT WordPiece tokenizer written by this script).
* ``tiny-*/expected.safetensors``: resized images, ``pixel_values``, vision
  encoder output and teacher-forced decoder logits.
* ``tiny-*/expected.json``: ``model.generate`` results (greedy and beam search,
  with and without a text prompt) for the four images.
* ``tiny-*/expected_formats.safetensors`` + ``tiny-*/expected_formats.json``: the
  same for the batch of ``photo_*`` images (resized images, ``pixel_values``, vision
  encoder output; a subset of the generate cases), plus per image the sha256 and
  size of the RGB pixels the processor works on.
* ``resize/sweep.safetensors`` + ``resize/sweep.json``: a sweep of Pillow
  ``Image.resize`` results (many source / target shapes, all resampling filters,
  RGB plus RGBA / LA / L sources converted like transformers' ``convert_to_rgb``),
  to check a reimplementation of PIL's resampling broadly.

Every image is loaded as ``Image.open`` + ``load`` + ``copy`` and then passed
through ``PIL.ImageOps.exif_transpose`` before the processor (a no-op for all
files but ``photo_exif6.jpg``).

All reference values are computed with the checkpoint and processor *reloaded from
disk* (``from_pretrained``, PIL image backend), i.e. exactly what a consumer of the
fixture directory sees. Everything is deterministic (fixed seeds, one CPU thread,
float32).

How to run (from the repository root):

    python -m venv .venv-fixtures
    . .venv-fixtures/bin/activate
    pip install -r scripts/requirements-fixtures.txt
    python scripts/make_fixtures.py

No network access is needed: nothing is downloaded, the models are built from
configs.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import skimage
import tifffile
import torch
import transformers
from PIL import Image, ImageDraw, ImageOps, JpegImagePlugin
from safetensors.numpy import save_file as save_numpy_file
from safetensors.torch import save_file
from transformers import (
    BertTokenizerFast,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
    LogitsProcessor,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "captioner-cli" / "tests" / "fixtures"

IMAGE_SEED = 1234
PROMPT = "a picture of"

# name, (width, height), PIL mode
IMAGES = [
    ("odd_rgb.png", (37, 53), "RGB"),
    ("wide_rgba.png", (203, 131), "RGBA"),
    ("gray.png", (150, 97), "L"),
    ("tall_rgb.png", (61, 230), "RGB"),
]

# ---------------------------------------------------------------------------
# Tiny WordPiece vocabulary (lower-cased). [DEC] and [ENC] are appended as
# added special tokens, so they get the last two ids (like BLIP's 30522/30523).
# ---------------------------------------------------------------------------
BASE_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list(".,!?'-:;\"()")
    + """
a an the of in on with and at to from by for near next under over behind
is are was be has have it its this that there some two three four five many
picture photo image view close up black white red blue green yellow brown gray
orange pink purple dark light small large big little old young tall long
man woman person people boy girl child children kid player group crowd
dog cat horse bird cow sheep elephant bear zebra giraffe animal
car bus truck train bike bicycle motorcycle boat plane street road
table chair bed couch room kitchen plate food pizza cake sandwich bowl cup
tree trees grass field water beach sky snow mountain hill park city building
window door wall floor sign clock phone laptop computer book ball frisbee
shirt hat umbrella bag kite board surf skate ski
sitting standing walking running riding eating holding playing looking
flying lying parked covered filled top front side middle background
""".split()
    + ["##s", "##ing", "##ed", "##er", "##es", "##ly", "##y", "##n", "##e", "##a"]
)

# ---------------------------------------------------------------------------
# Model shapes. max_position_embeddings is small; hidden_act "gelu" everywhere.
# The seeds / init scales were picked (by a one-off search, not part of this
# script) so that greedy and beam captions end with [SEP] at varied lengths,
# are not one token repeated, and are robust to small numeric differences
# (see NOISE_EPS).
# ---------------------------------------------------------------------------
CHECKPOINTS = {
    "tiny-a": dict(
        seed=265,
        init=dict(word_embed=0.3, text_pos_embed=0.5, text_weight=1.0, cross_attn=0.1,
                  vision_weight=0.2, vision_embed=1.0, bias=0.3, sep_bias=3.0),
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, image_size=64, patch_size=16),
        text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64),
    ),
    "tiny-b": dict(
        seed=471,
        init=dict(word_embed=0.5, text_pos_embed=2.0, text_weight=0.3, cross_attn=0.1,
                  vision_weight=0.3, vision_embed=0.3, bias=0.1, sep_bias=5.0),
        vision=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, image_size=96, patch_size=8),
        text=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                  intermediate_size=96),
    ),
}

# Re-initialisation (normal std per parameter group; per-checkpoint overrides in
# CHECKPOINTS[..]["init"]). The default init gives near-uniform next-token
# distributions, i.e. argmax ties and one-token loops.
DEFAULT_INIT = dict(
    vision_weight=0.3,   # vision linear + patch conv weights
    vision_embed=0.5,    # vision class / position embeddings
    word_embed=0.3,      # text word embeddings (tied with the LM head)
    text_pos_embed=0.3,  # text position embeddings
    text_weight=0.3,     # text self-attention / FFN / LM-head transform weights
    cross_attn=0.3,      # text cross-attention weights
    bias=0.1,            # all biases (incl. the LM-head bias)
    ln_noise=0.05,       # layernorm weight = 1 + noise, bias = noise
    sep_bias=0.0,        # added to the LM-head bias of [SEP]
)

CASES = [
    ("greedy_default", None, {}),
    ("greedy_prompt", PROMPT, dict(max_new_tokens=12)),
    ("greedy_penalties", None, dict(repetition_penalty=1.5, no_repeat_ngram_size=2,
                                    min_new_tokens=6, max_new_tokens=15)),
    ("beam3_lp", None, dict(num_beams=3, length_penalty=0.6, num_return_sequences=2,
                            max_new_tokens=15)),
    ("beam3_prompt", PROMPT, dict(num_beams=3, length_penalty=1.5, num_return_sequences=2,
                                  max_new_tokens=12)),
    ("beam3_early", None, dict(num_beams=3, early_stopping=True, min_new_tokens=4,
                               no_repeat_ngram_size=3, repetition_penalty=1.2,
                               max_new_tokens=15)),
    ("beam3_blip_eval", PROMPT, dict(num_beams=3, max_length=20, min_length=5)),
    ("beam4_lp2", None, dict(num_beams=4, length_penalty=2.0, early_stopping=False,
                             num_return_sequences=1, max_new_tokens=10)),
    # appended later: keep new cases at the end so existing case indices stay put
    ("beam3_never", None, dict(num_beams=3, early_stopping="never", length_penalty=1.3,
                               num_return_sequences=2, max_new_tokens=12)),
    ("beam2_never_neg_lp", PROMPT, dict(num_beams=2, early_stopping="never",
                                        length_penalty=-0.5, max_new_tokens=10)),
    ("beam5_min_len", None, dict(num_beams=5, num_return_sequences=5, min_new_tokens=8,
                                 max_new_tokens=14, length_penalty=1.0,
                                 no_repeat_ngram_size=2)),
    # "never" with a setting where it does change the output (see RECORD_IF_FALSE)
    ("beam3_never_lp2", None, dict(num_beams=3, num_return_sequences=2, max_new_tokens=15,
                                   length_penalty=2.0, early_stopping="never")),
]

# Cases that also record "sequences_if_false": the sequences of the same call with
# early_stopping=False. The script asserts that they differ from "sequences" in at
# least one row (so the case tells "never" apart from False) and that the False run
# passes the same noise check.
RECORD_IF_FALSE = {"beam3_never_lp2"}

# Robustness check: every case is re-run NOISE_TRIALS times with uniform noise in
# [-NOISE_EPS, NOISE_EPS] added to every processed score; the sequences must not
# change.
NOISE_EPS = 1e-3
NOISE_TRIALS = 5

# Teacher forcing inputs (words; ids are looked up in the vocab).
TF_ROWS = [
    ["a", "dog", "sitting", "on", "the", "grass"],
    ["a", "man", "riding"],
]
TF_IMAGE_INDEX = [0, 1]


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------
def make_image(rng: np.random.Generator, size: tuple[int, int], mode: str) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    xn, yn = x / max(w - 1, 1), y / max(h - 1, 1)
    # smooth gradients, one per channel, plus a low-frequency wave
    r = 255 * xn
    g = 255 * yn
    b = 127.5 + 127.5 * np.sin(2 * np.pi * (1.3 * xn + 0.7 * yn) + rng.uniform(0, 2 * np.pi))
    rgb = np.stack([r, g, b], axis=-1)
    rgb += rng.normal(0.0, 12.0, size=rgb.shape)  # noise
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    # shapes with hard edges (ringing of the bicubic filter shows up here)
    for _ in range(3):
        x0, x1 = sorted(rng.integers(0, w, size=2))
        y0, y1 = sorted(rng.integers(0, h, size=2))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1 + 1, y1 + 1], fill=color)
        else:
            draw.ellipse([x0, y0, x1 + 2, y1 + 2], fill=color)
    draw.line([(0, h - 1), (w - 1, 0)], fill=(255, 255, 255), width=2)
    if mode == "RGB":
        return img
    if mode == "L":
        return img.convert("L")
    if mode == "RGBA":
        # alpha: 255 on the left, fading to 0 on the right; a fully
        # transparent block, a half transparent (128) block, noise elsewhere.
        alpha = 255.0 * (1.0 - xn) + rng.normal(0.0, 10.0, size=xn.shape)
        alpha[: h // 3, w // 8: w // 3] = 0.0
        alpha[h // 2:, w // 4: w // 2] = 128.0
        alpha[: h // 5, -w // 6:] = 255.0
        a = np.clip(np.rint(alpha), 0, 255).astype(np.uint8)
        rgba = np.concatenate([np.asarray(img), a[..., None]], axis=-1)
        return Image.fromarray(rgba, "RGBA")
    raise ValueError(mode)


def write_images(out_dir: Path) -> list[Image.Image]:
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(IMAGE_SEED)
    images = []
    for name, size, mode in IMAGES:
        img = make_image(rng, size, mode)
        assert img.size == size and img.mode == mode
        img.save(out_dir / name, format="PNG", optimize=False, compress_level=9)
        # reload so that what we feed the processor is what the PNG decodes to
        with Image.open(out_dir / name) as f:
            f.load()
            re = f.copy()
        assert re.mode == mode and np.array_equal(np.asarray(re), np.asarray(img))
        # exif_transpose is applied to every image before the processor (the PNGs
        # carry no EXIF: nothing changes)
        up = ImageOps.exif_transpose(re)
        assert up.mode == re.mode and up.size == re.size and up.info == re.info
        assert np.array_equal(np.asarray(up), np.asarray(re))
        images.append(up)
    return images


# ---------------------------------------------------------------------------
# Real-photo images in other file formats (JPEG, WebP, TIFF)
# ---------------------------------------------------------------------------
# Sources: photographs bundled with scikit-image (in its wheel, no download),
# read from the package directory with PIL (not through skimage.io).
PHOTOS = ("chelsea", "coffee", "astronaut")

# name, photo, upright size (w, h), how it is written. Everything is written by
# Pillow except the 16-bit TIFF (Pillow has no 16-bit RGB mode and cannot write
# one): tifffile writes that. Keep new entries at the end so indices stay put.
# The photo and size of each entry were picked (by a one-off search, not part of
# this script) so that every FORMAT_CASES output of both checkpoints survives a
# stronger noise check than NOISE_EPS (20 trials at 2e-3, image on its own) and
# has no top-2 or beam candidate gap below 1e-4.
FORMAT_IMAGES = [
    ("photo_420_baseline.jpg", "coffee", (301, 217),
     dict(kind="jpeg", quality=85, subsampling="4:2:0", progressive=False)),
    ("photo_422_progressive.jpg", "coffee", (93, 171),
     dict(kind="jpeg", quality=80, subsampling="4:2:2", progressive=True)),
    ("photo_444_q95.jpg", "astronaut", (129, 95),
     dict(kind="jpeg", quality=95, subsampling="4:4:4", progressive=False)),
    ("photo_cmyk.jpg", "coffee", (105, 79),
     dict(kind="jpeg_cmyk", quality=90)),
    ("photo_exif6.jpg", "chelsea", (97, 71),
     dict(kind="jpeg_exif6", quality=85, subsampling="4:2:0", progressive=False)),
    ("photo_lossy.webp", "chelsea", (141, 103),
     dict(kind="webp", lossless=False, quality=80)),
    ("photo_lossy_alpha.webp", "astronaut", (119, 89),
     dict(kind="webp_alpha", lossless=False, quality=80)),
    ("photo_lossless.webp", "chelsea", (75, 57),
     dict(kind="webp", lossless=True, quality=80)),
    ("photo_lzw.tif", "coffee", (85, 61),
     dict(kind="tiff", compression="tiff_lzw")),
    ("photo_jpeg_ycbcr.tif", "astronaut", (99, 73),
     dict(kind="tiff_ycbcr_jpeg", compression="jpeg", quality=90)),
    ("photo_rgb16.tif", "coffee", (47, 35),
     dict(kind="tiff_rgb16")),
]
FORMAT_MAX_BYTES = 300_000  # all the files above together

# The generate cases run on the batch of format images (a subset of CASES: greedy
# and 3-beam search, with and without the prompt).
FORMAT_CASES = ["greedy_default", "greedy_prompt", "beam3_lp", "beam3_prompt",
                "beam3_blip_eval"]

# TIFF tags / JPEG sampling factors used by the checks below
_TIFF_COMPRESSION, _TIFF_PHOTOMETRIC, _TIFF_BPS = 259, 262, 258
_JPEG_SAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def sha256_hex(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def load_photo(name: str) -> tuple[Image.Image, str]:
    """A scikit-image bundled photograph, decoded by PIL, as a fresh RGB image
    (no ICC profile or other metadata carried over)."""
    ref = importlib.resources.files("skimage") / "data" / f"{name}.png"
    raw = ref.read_bytes()
    with Image.open(io.BytesIO(raw)) as f:
        f.load()
        arr = np.asarray(f.convert("RGB"))
    return Image.fromarray(np.ascontiguousarray(arr), "RGB"), sha256_hex(raw)


def fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Largest centred crop with the aspect ratio of `size`, LANCZOS-resized."""
    out = ImageOps.fit(img, size, method=Image.Resampling.LANCZOS)
    assert out.size == size and out.mode == "RGB"
    return out


def fit16(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Like fit(), but resized per channel in float ("F" mode) and scaled to
    16 bits, so the low bytes carry real information: uint16 [h, w, 3]."""
    w0, h0 = img.size
    w, h = size
    if w0 * h > h0 * w:  # too wide: crop the width
        cw, ch = round(h0 * w / h), h0
    else:
        cw, ch = w0, round(w0 * h / w)
    left, top = (w0 - cw) // 2, (h0 - ch) // 2
    box = (left, top, left + cw, top + ch)
    chans = []
    for band in img.split():
        f = band.convert("F").resize(size, Image.Resampling.LANCZOS, box=box)
        chans.append(np.asarray(f, dtype=np.float64))
    arr = np.clip(np.rint(np.stack(chans, axis=-1) * 257.0), 0, 65535).astype(np.uint16)
    assert arr.shape == (h, w, 3)
    return arr


def alpha_pattern(size: tuple[int, int]) -> np.ndarray:
    """255 on the left fading to 0 on the right, a fully transparent block, a half
    transparent (128) block and an opaque corner (like wide_rgba.png)."""
    w, h = size
    xn = np.mgrid[0:h, 0:w][1].astype(np.float64) / (w - 1)
    alpha = 255.0 * (1.0 - xn)
    alpha[: h // 3, w // 8: w // 3] = 0.0
    alpha[h // 2:, w // 4: w // 2] = 128.0
    alpha[: h // 5, -w // 6:] = 255.0
    return np.clip(np.rint(alpha), 0, 255).astype(np.uint8)


def save_format_image(path: Path, upright: Image.Image, photo: Image.Image,
                      size: tuple[int, int], spec: dict) -> dict:
    """Write one file; returns what was done (JSON-able) and what to check."""
    kind = spec["kind"]
    done: dict = {"writer": f"Pillow {PIL.__version__}"}
    if kind in ("jpeg", "jpeg_exif6"):
        im = upright
        kw = dict(quality=spec["quality"], subsampling=spec["subsampling"],
                  progressive=spec["progressive"], optimize=False)
        if kind == "jpeg_exif6":
            # stored rotated so that orientation 6 ("rotate 90 degrees clockwise to
            # display", exif_transpose applies ROTATE_270) shows it upright
            im = upright.transpose(Image.Transpose.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            kw["exif"] = exif.tobytes()
            done["exif_orientation_written"] = 6
        im.save(path, format="JPEG", **kw)
        done["save"] = {k: v for k, v in kw.items() if k != "exif"}
    elif kind == "jpeg_cmyk":
        kw = dict(quality=spec["quality"], optimize=False)
        upright.convert("CMYK").save(path, format="JPEG", **kw)
        done["save"] = dict(kw, source_conversion='Image.convert("CMYK")')
    elif kind in ("webp", "webp_alpha"):
        im = upright
        if kind == "webp_alpha":
            a = alpha_pattern(size)
            im = Image.fromarray(np.concatenate([np.asarray(upright), a[..., None]], axis=-1),
                                 "RGBA")
        kw = dict(lossless=spec["lossless"], quality=spec["quality"], method=4, exact=False)
        im.save(path, format="WEBP", **kw)
        done["save"] = kw
    elif kind == "tiff":
        kw = dict(compression=spec["compression"])
        upright.save(path, format="TIFF", **kw)
        done["save"] = kw
    elif kind == "tiff_ycbcr_jpeg":
        kw = dict(compression=spec["compression"], quality=spec["quality"])
        upright.convert("YCbCr").save(path, format="TIFF", **kw)
        done["save"] = dict(kw, source_conversion='Image.convert("YCbCr")')
    elif kind == "tiff_rgb16":
        arr16 = fit16(photo, size)
        with open(path, "wb") as fh:
            tifffile.imwrite(fh, arr16, photometric="rgb", compression=None,
                             metadata=None, software=False, datetime=False,
                             byteorder="<")
        done = {"writer": f"tifffile {tifffile.__version__} (Pillow cannot write 16-bit RGB)",
                "save": dict(photometric="rgb", compression=None, byteorder="<"),
                "source16": arr16}
    else:
        raise ValueError(kind)
    return done


def write_format_images(out_dir: Path) -> tuple[list[Image.Image], list[dict]]:
    """Writes FORMAT_IMAGES into out_dir (which exists) and returns, per image,
    the image handed to the processor (Image.open + load + copy, then
    ImageOps.exif_transpose, exactly like the PNGs) and its description."""
    photos = {n: load_photo(n) for n in PHOTOS}
    images, infos, total = [], [], 0
    for name, photo_name, size, spec in FORMAT_IMAGES:
        photo, photo_sha = photos[photo_name]
        upright = fit(photo, size)
        path = out_dir / name
        done = save_format_image(path, upright, photo, size, spec)
        source16 = done.pop("source16", None)
        raw = path.read_bytes()
        total += len(raw)
        with Image.open(path) as f:
            f.load()
            fmt = f.format
            re = f.copy()
            sampling = JpegImagePlugin.get_sampling(f) if fmt == "JPEG" else None
            layers = [list(layer) for layer in f.layer] if fmt == "JPEG" else None
            tags = dict(f.tag_v2) if fmt == "TIFF" else {}
        opened_mode, stored_size = re.mode, re.size
        orientation = re.getexif().get(0x0112)
        up = ImageOps.exif_transpose(re)
        kind = spec["kind"]
        # ---- the file is what it claims to be ----
        if kind in ("jpeg", "jpeg_exif6"):
            assert fmt == "JPEG" and opened_mode == "RGB"
            assert sampling == _JPEG_SAMPLING[spec["subsampling"]], (name, sampling)
            assert bool(re.info.get("progressive", 0)) == spec["progressive"], name
        if kind == "jpeg_exif6":
            assert orientation == 6 and stored_size == (size[1], size[0]) and up.size == size
        else:
            assert orientation is None and up.size == size == stored_size, name
            assert np.array_equal(np.asarray(up), np.asarray(re))
        if kind == "jpeg_cmyk":
            assert fmt == "JPEG" and opened_mode == "CMYK" and "adobe" in re.info, re.info
        if kind.startswith("webp"):
            assert fmt == "WEBP" and raw[12:16] == (b"VP8L" if spec["lossless"] else b"VP8X"
                                                    if kind == "webp_alpha" else b"VP8 ")
            assert opened_mode == ("RGBA" if kind == "webp_alpha" else "RGB"), opened_mode
            if spec["lossless"]:
                assert np.array_equal(np.asarray(re), np.asarray(upright))
        if kind == "webp_alpha":
            assert b"ALPH" in raw
            assert np.array_equal(np.asarray(re)[..., 3], alpha_pattern(size))
        if kind == "tiff":
            assert fmt == "TIFF" and opened_mode == "RGB" and tags[_TIFF_COMPRESSION] == 5
            assert np.array_equal(np.asarray(re), np.asarray(upright))
        if kind == "tiff_ycbcr_jpeg":
            assert fmt == "TIFF" and opened_mode == "RGB"
            assert tags[_TIFF_COMPRESSION] == 7 and tags[_TIFF_PHOTOMETRIC] == 6, tags
        if kind == "tiff_rgb16":
            assert fmt == "TIFF" and opened_mode == "RGB" and tags[_TIFF_BPS] == (16, 16, 16)
            # Pillow keeps the high byte of each 16-bit sample (no rounding)
            assert np.array_equal(np.asarray(re), (source16 >> 8).astype(np.uint8))
            assert not np.array_equal(
                np.asarray(re), ((source16.astype(np.uint32) + 128) // 257).astype(np.uint8))
        # ---- what the processor gets (convert_to_rgb), cross-checked ----
        rgb = transformers.image_transforms.convert_to_rgb(up, return_numpy=True)
        assert rgb.dtype == np.uint8 and rgb.shape == (size[1], size[0], 3)
        if opened_mode == "CMYK":
            # Pillow's CMYK -> RGB: nk = 255 - K; R = nk - round(C * nk / 255) (same
            # for G/M, B/Y), with round(x / 255) computed as ((t >> 8) + t) >> 8,
            # t = x + 128. No ICC profile, no inversion at this point.
            c = np.asarray(up).astype(np.int64)
            nk = 255 - c[..., 3:4]
            t = c[..., :3] * nk + 128
            assert np.array_equal(rgb, (nk - (((t >> 8) + t) >> 8)).astype(np.uint8))
        info = {
            "file": name,
            "format": fmt,
            "bytes": len(raw),
            "file_sha256": sha256_hex(raw),
            "source": f"scikit-image {skimage.__version__} skimage/data/{photo_name}.png "
                      f"(sha256 {photo_sha}), largest centred crop of aspect w:h, "
                      f"LANCZOS-resized to {size[0]}x{size[1]}",
            "written_by": done["writer"],
            "save": done["save"],
            "opened_mode": opened_mode,
            "stored_size": list(stored_size),
            "exif_orientation": orientation,
            "jpeg": None if fmt != "JPEG" else {
                # get_sampling is -1 for anything but 3 components (CMYK)
                "sampling": {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(sampling),
                # per component: id, h, v sampling factors, quantisation table
                "components": [[ord(c) if isinstance(c, str) else c, h, v, q]
                               for c, h, v, q in layers],
                "progressive": bool(re.info.get("progressive", 0)),
                "adobe_transform": re.info.get("adobe_transform"),
            },
            "tiff": None if fmt != "TIFF" else {
                "compression": int(tags[_TIFF_COMPRESSION]),
                "photometric": int(tags[_TIFF_PHOTOMETRIC]),
                "bits_per_sample": [int(v) for v in tags[_TIFF_BPS]],
                "ycbcr_subsampling": (None if 530 not in tags
                                      else [int(v) for v in tags[530]]),
            },
            "webp": None if fmt != "WEBP" else {
                "chunk": raw[12:16].decode("ascii"),
                "lossless": b"VP8L" in raw[12:],
                "alpha": re.mode == "RGBA",
            },
            "size": [int(rgb.shape[1]), int(rgb.shape[0])],
            "rgb_sha256": sha256_hex(np.ascontiguousarray(rgb).tobytes()),
        }
        images.append(up)
        infos.append(info)
    assert total < FORMAT_MAX_BYTES, total
    return images, infos


# ---------------------------------------------------------------------------
# Tokenizer / processor / model
# ---------------------------------------------------------------------------
def make_tokenizer() -> BertTokenizerFast:
    assert len(set(BASE_VOCAB)) == len(BASE_VOCAB), "duplicate vocab entries"
    vocab = {tok: i for i, tok in enumerate(BASE_VOCAB)}
    tok = BertTokenizerFast(
        vocab=vocab,
        do_lower_case=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        tokenize_chinese_chars=True,
        strip_accents=None,
        model_max_length=512,
    )
    # exactly what BLIP's init_tokenizer() does
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    n = len(BASE_VOCAB)
    assert tok.convert_tokens_to_ids(["[PAD]", "[DEC]", "[ENC]"]) == [0, n, n + 1]
    assert len(tok) == n + 2
    return tok


def make_processor(image_size: int) -> BlipProcessor:
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        resample=PIL.Image.Resampling.BICUBIC,
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )
    return BlipProcessor(image_processor=image_processor, tokenizer=make_tokenizer())


def make_config(spec: dict, tok: BertTokenizerFast) -> BlipConfig:
    vision = dict(spec["vision"], hidden_act="gelu", layer_norm_eps=1e-5)
    text = dict(
        spec["text"],
        vocab_size=len(tok),
        max_position_embeddings=64,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        encoder_hidden_size=spec["vision"]["hidden_size"],
        bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=2,  # as on the hub (unused: BLIP passes sep_token_id as eos)
    )
    return BlipConfig(text_config=text, vision_config=vision)


@torch.no_grad()
def reinit_(model: BlipForConditionalGeneration, spec: dict, sep_id: int) -> None:
    """Re-initialise all parameters with larger weights (see DEFAULT_INIT)."""
    init = dict(DEFAULT_INIT, **spec.get("init", {}))
    gen = torch.Generator().manual_seed(spec["seed"])

    def normal_(p: torch.Tensor, std: float, mean: float = 0.0) -> None:
        p.copy_(torch.randn(p.shape, generator=gen) * std + mean)

    ln_params = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.add(f"{mod_name}.weight")
            ln_params.add(f"{mod_name}.bias")
    seen = set()
    for name, p in model.named_parameters():  # tied parameters are listed once
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name in ln_params:
            normal_(p, init["ln_noise"], 1.0 if name.endswith("weight") else 0.0)
        elif name.endswith(("class_embedding", "embeddings.position_embedding")):
            normal_(p, init["vision_embed"])
        elif name.endswith("word_embeddings.weight"):
            normal_(p, init["word_embed"])
        elif name.endswith("position_embeddings.weight"):
            normal_(p, init["text_pos_embed"])
        elif name == "text_decoder.cls.predictions.bias":
            normal_(p, init["bias"])
        elif p.ndim >= 2:
            if ".crossattention." in name:
                std = init["cross_attn"]
            elif name.startswith("vision_model."):
                std = init["vision_weight"]
            else:
                std = init["text_weight"]
            normal_(p, std)
        else:
            normal_(p, init["bias"])
    model.text_decoder.cls.predictions.bias[sep_id] += init["sep_bias"]


# ---------------------------------------------------------------------------
# Generation helpers
# ---------------------------------------------------------------------------
class Top2Recorder(LogitsProcessor):
    """Appended last to the processor list: records, per step, the gap between the
    best and second best processed score of every row that is still running."""

    def __init__(self, sep_id: int, prompt_len: int):
        self.sep_id = sep_id
        self.prompt_len = prompt_len
        self.min_gap = float("inf")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        live = ~(input_ids[:, self.prompt_len:] == self.sep_id).any(dim=1)
        if live.any():
            top2 = torch.topk(scores[live].double(), 2, dim=-1).values
            self.min_gap = min(self.min_gap, float((top2[:, 0] - top2[:, 1]).min()))
        return scores


class NoiseInjector(LogitsProcessor):
    """Robustness check only (never used for the recorded outputs): adds uniform
    noise in [-eps, eps] to every processed score, to emulate the float error of
    another implementation."""

    def __init__(self, eps: float, seed: int):
        self.eps = eps
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        noise = (torch.rand(scores.shape, generator=self.gen, dtype=torch.float64) * 2 - 1) * self.eps
        return (scores.double() + noise).to(scores.dtype)


def effective_config(gc) -> dict:
    return {
        "max_length": gc.max_length,
        "min_length": gc.min_length,
        "max_new_tokens": gc.max_new_tokens,
        "min_new_tokens": gc.min_new_tokens,
        "num_beams": gc.num_beams,
        "num_return_sequences": gc.num_return_sequences,
        "length_penalty": gc.length_penalty,
        "early_stopping": gc.early_stopping,
        "repetition_penalty": gc.repetition_penalty,
        "no_repeat_ngram_size": gc.no_repeat_ngram_size,
        "do_sample": gc.do_sample,
        "bos_token_id": gc.bos_token_id,
        "eos_token_id": gc.eos_token_id,
        "pad_token_id": gc.pad_token_id,
    }


@torch.no_grad()
def run_case(model, processor, images, pixel_values, name, prompt, gen_kwargs, noise=None) -> dict:
    td = model.text_decoder
    sep_id = model.config.text_config.sep_token_id
    captured = {}

    # instance-level wrappers (no extra kwargs reach model.generate)
    orig_generate = td.generate
    orig_len = td._prepare_generated_length
    orig_lp = td._get_logits_processor
    orig_topk = td._get_top_k_continuations

    def generate_spy(*args, **kwargs):
        captured["decoder_input_ids"] = kwargs["input_ids"].clone()
        return orig_generate(*args, **kwargs)

    def len_spy(*args, **kwargs):
        gc = orig_len(*args, **kwargs)
        captured["effective"] = effective_config(gc)
        return gc

    def lp_spy(*args, **kwargs):
        lp = orig_lp(*args, **kwargs)
        captured["processors"] = [type(p).__name__ for p in lp]
        lp.append(captured["recorder"])
        if noise is not None:
            lp.append(noise)
        return lp

    def topk_spy(*args, **kwargs):
        # accumulated beam scores [batch, num_beams * vocab] -> gaps between the
        # consecutive best candidates that decide which continuations survive
        acc = kwargs["accumulated_log_probs"].double()
        k = kwargs["beams_to_keep"] + 1
        top = torch.topk(acc, k, dim=-1).values
        gaps = top[:, :-1] - top[:, 1:]
        gaps = gaps[(top[:, 1:] > -1e8)]
        if gaps.numel():
            captured["beam_gap"] = min(captured.get("beam_gap", float("inf")), float(gaps.min()))
        return orig_topk(*args, **kwargs)

    call = dict(pixel_values=pixel_values)
    prompt_ids = None
    if prompt is not None:
        enc = processor(images=images, text=[prompt] * len(images), return_tensors="pt")
        assert torch.equal(enc["pixel_values"], pixel_values)
        prompt_ids = enc["input_ids"].clone()
        call["input_ids"] = enc["input_ids"]
        call["attention_mask"] = enc["attention_mask"]
    prompt_len = 1 if prompt is None else prompt_ids.shape[1] - 1
    captured["recorder"] = Top2Recorder(sep_id, prompt_len)

    td.generate = generate_spy
    td._prepare_generated_length = len_spy
    td._get_logits_processor = lp_spy
    td._get_top_k_continuations = topk_spy
    try:
        out = model.generate(**call, **gen_kwargs)
    finally:
        del td.generate, td._prepare_generated_length, td._get_logits_processor
        del td._get_top_k_continuations

    is_beam = gen_kwargs.get("num_beams", 1) > 1
    if is_beam:
        sequences, scores = out.sequences, out.sequences_scores
    else:
        sequences, scores = out, None
    dec_ids = captured["decoder_input_ids"]
    assert dec_ids.shape[1] == prompt_len
    assert torch.equal(sequences[:, :prompt_len],
                       dec_ids.repeat_interleave(sequences.shape[0] // dec_ids.shape[0], dim=0))
    case = {
        "name": name,
        "prompt": prompt,
    }
    if prompt_ids is not None:
        case["prompt_input_ids"] = prompt_ids.tolist()
    case.update({
        "decoder_input_ids": dec_ids.tolist(),
        "kwargs": gen_kwargs,
        "effective": captured["effective"],
        "logits_processors": captured["processors"][:],
        "sequences": sequences.tolist(),
        "sequences_scores": None if scores is None else [float(s) for s in scores],
        "texts": processor.batch_decode(sequences, skip_special_tokens=True),
        "min_top2_gap": captured["recorder"].min_gap,
    })
    if is_beam:
        case["min_beam_candidate_gap"] = captured["beam_gap"]
        case["sequences_scores_check"] = check_beam_scores(td, out, prompt_len, gen_kwargs, sep_id)
    return case


def check_beam_scores(td, out, prompt_len: int, gen_kwargs: dict, sep_id: int) -> str:
    """Verify sequences_scores == sum of the chosen tokens' processed log-probs
    divided by (number of new tokens, [SEP] included) ** length_penalty."""
    lp = gen_kwargs.get("length_penalty", 1.0)
    trans = td.compute_transition_scores(out.sequences, out.scores, out.beam_indices,
                                         normalize_logits=False)
    for i in range(out.sequences.shape[0]):
        n = int((out.beam_indices[i] >= 0).sum())
        gen = out.sequences[i, prompt_len:].tolist()
        expected_n = gen.index(sep_id) + 1 if sep_id in gen else len(gen)
        assert n == expected_n, (n, expected_n)
        ref = float(trans[i, :n].double().sum()) / n ** lp
        got = float(out.sequences_scores[i])
        assert abs(ref - got) <= 1e-4 * max(1.0, abs(ref)), (ref, got)
    return "sum(processed log-probs of the new tokens) / new_tokens ** length_penalty"


def prompt_len_of(case: dict) -> int:
    return len(case["decoder_input_ids"][0])


def trim_at_sep(row: list[int], prompt_len: int, sep_id: int) -> list[int]:
    gen = row[prompt_len:]
    return row[: prompt_len + gen.index(sep_id) + 1] if sep_id in gen else row


def sep_stats(case: dict, sep_id: int) -> dict:
    p = len(case["decoder_input_ids"][0])
    ended, new_lens = 0, []
    for row in case["sequences"]:
        gen = row[p:]
        if sep_id in gen:
            ended += 1
            new_lens.append(gen.index(sep_id) + 1)
        else:
            new_lens.append(len(gen))
    return {"ended_with_sep": ended, "rows": len(case["sequences"]), "new_tokens": new_lens}


# ---------------------------------------------------------------------------
# Per checkpoint
# ---------------------------------------------------------------------------
def preprocess(processor, images: list[Image.Image], S: int):
    """pixel_values from the processor, the uint8 images after RGB conversion and
    resize (before rescale), and how well the one reproduces the other."""
    ip = processor.image_processor
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    assert pixel_values.dtype == torch.float32 and pixel_values.shape == (len(images), 3, S, S)
    resized = []
    for img in images:
        chw = ip.process_image(img, do_convert_rgb=True)  # RGB conversion (alpha onto white)
        r = ip.resize(chw, size=transformers.image_utils.SizeDict(height=S, width=S),
                      resample=ip.resample)
        assert r.dtype == np.uint8 and r.shape == (3, S, S)
        resized.append(np.moveaxis(r, 0, -1))
    resized_u8 = torch.from_numpy(np.stack(resized))
    mean = torch.tensor(OPENAI_CLIP_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, dtype=torch.float64).view(1, 3, 1, 1)
    recon = (resized_u8.permute(0, 3, 1, 2).double() / 255.0 - mean) / std
    pix_err = float((recon - pixel_values.double()).abs().max())
    assert pix_err < 1e-6, pix_err
    return pixel_values, resized_u8, pix_err


def run_cases(name: str, model, processor, images, pixel_values, case_specs, sep_id: int):
    """Runs the generate cases on the batch `images` (with the noise check, and the
    early_stopping=False run for RECORD_IF_FALSE). Returns (cases, stats)."""
    def noise_check(case_name, prompt, kw, sequences) -> None:
        for t in range(NOISE_TRIALS):
            noisy = run_case(model, processor, images, pixel_values, case_name, prompt, kw,
                             noise=NoiseInjector(NOISE_EPS, 1000 + t))
            assert noisy["sequences"] == sequences, (name, case_name, t)

    cases, stats = [], {}
    for case_name, prompt, kwargs in case_specs:
        kw = dict(kwargs)
        if kw.get("num_beams", 1) > 1:
            kw.update(return_dict_in_generate=True, output_scores=True)
        case = run_case(model, processor, images, pixel_values, case_name, prompt, kw)
        st = sep_stats(case, sep_id)
        case["ended_with_sep"] = st["ended_with_sep"]
        case["new_tokens"] = st["new_tokens"]
        noise_check(case_name, prompt, kw, case["sequences"])
        case["noise_check"] = {"eps": NOISE_EPS, "trials": NOISE_TRIALS, "same_sequences": True}
        if case_name in RECORD_IF_FALSE:
            assert kw["early_stopping"] == "never" and kw["length_penalty"] > 0, case_name
            kw_false = dict(kw, early_stopping=False)
            alt = run_case(model, processor, images, pixel_values, case_name, prompt, kw_false)
            assert alt["effective"]["early_stopping"] is False
            noise_check(case_name, prompt, kw_false, alt["sequences"])
            assert min(case["min_beam_candidate_gap"], alt["min_beam_candidate_gap"]) >= 1e-4
            # rows compared up to and including their first [SEP] (the padding after it
            # depends on the batch width)
            differ = sum(trim_at_sep(a, prompt_len_of(case), sep_id)
                         != trim_at_sep(b, prompt_len_of(case), sep_id)
                         for a, b in zip(case["sequences"], alt["sequences"]))
            assert differ > 0, (name, case_name)
            st["rows_differing_from_false"] = differ
            # keep the new field next to "sequences" in the JSON
            ordered = {}
            for k, v in case.items():
                ordered[k] = v
                if k == "sequences":
                    ordered["sequences_if_false"] = alt["sequences"]
            case = ordered
        cases.append(case)
        stats[case_name] = st
    return cases, stats


def build_checkpoint(name: str, spec: dict, images: list[Image.Image],
                     fmt_images: list[Image.Image], fmt_infos: list[dict]) -> dict:
    out_dir = FIXTURES / name
    out_dir.mkdir(parents=True)
    S = spec["vision"]["image_size"]

    torch.manual_seed(spec["seed"])
    processor = make_processor(S)
    tok = processor.tokenizer
    config = make_config(spec, tok)
    model = BlipForConditionalGeneration(config).eval().float()
    reinit_(model, spec, tok.sep_token_id)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)

    # ---- everything below uses the checkpoint as reloaded from disk ----
    model2 = BlipForConditionalGeneration.from_pretrained(out_dir).eval()
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    model = model2
    processor = BlipProcessor.from_pretrained(out_dir, backend="pil")
    ip = processor.image_processor
    assert type(ip).__name__ == "BlipImageProcessorPil", type(ip)
    assert ip.backend == "pil"
    cfg = model.config.text_config
    dec_id, sep_id, pad_id = cfg.bos_token_id, cfg.sep_token_id, cfg.pad_token_id

    # ---- preprocessing ----
    pixel_values, resized_u8, pix_err = preprocess(processor, images, S)
    assert pixel_values.shape[0] == 4

    # ---- vision encoder + teacher forcing ----
    with torch.no_grad():
        vis = model.vision_model(pixel_values=pixel_values).last_hidden_state
        n_patches = (S // spec["vision"]["patch_size"]) ** 2
        assert vis.shape == (4, 1 + n_patches, spec["vision"]["hidden_size"])
        L = 2 + max(len(r) for r in TF_ROWS)
        tf_ids = torch.full((len(TF_ROWS), L), pad_id, dtype=torch.int64)
        tf_mask = torch.zeros((len(TF_ROWS), L), dtype=torch.int64)
        for i, words in enumerate(TF_ROWS):
            ids = [dec_id] + tok.convert_tokens_to_ids(words) + [sep_id]
            assert tok.unk_token_id not in ids
            tf_ids[i, : len(ids)] = torch.tensor(ids)
            tf_mask[i, : len(ids)] = 1
        tf_index = torch.tensor(TF_IMAGE_INDEX, dtype=torch.int64)
        tf_logits = model.text_decoder(
            input_ids=tf_ids, attention_mask=tf_mask, encoder_hidden_states=vis[tf_index]
        ).logits
        assert tf_logits.shape == (len(TF_ROWS), L, cfg.vocab_size), tf_logits.shape

    save_file(
        {
            "resized_u8": resized_u8.contiguous(),
            "pixel_values": pixel_values.contiguous(),
            "vision_last_hidden_state": vis.contiguous(),
            "tf_input_ids": tf_ids,
            "tf_attention_mask": tf_mask,
            "tf_image_index": tf_index,
            "tf_logits": tf_logits.float().contiguous(),
        },
        out_dir / "expected.safetensors",
    )

    # ---- generation ----
    cases, stats = run_cases(name, model, processor, images, pixel_values, CASES, sep_id)

    expected = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "image_backend": "pil (BlipProcessor.from_pretrained(dir, backend=\"pil\") -> "
                         "BlipImageProcessorPil)",
        "images": [n for n, _, _ in IMAGES],
        "image_size": S,
        "pixel_values_vs_resized_max_abs_diff": pix_err,
        "bos_token_id": dec_id,
        "sep_token_id": sep_id,
        "pad_token_id": pad_id,
        "cases": cases,
    }
    with open(out_dir / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    # ---- the real-photo JPEG / WebP / TIFF images: their own files ----
    fmt = build_formats(name, out_dir, spec, model, processor, fmt_images, fmt_infos)
    return {"pixel_err": pix_err, "stats": stats, "cases": cases, "formats": fmt}


def build_formats(name: str, out_dir: Path, spec: dict, model, processor,
                  images: list[Image.Image], infos: list[dict]) -> dict:
    """expected_formats.safetensors / expected_formats.json: like expected.*, for
    the batch of FORMAT_IMAGES (no teacher forcing) and the FORMAT_CASES."""
    S = spec["vision"]["image_size"]
    ip = processor.image_processor
    cfg = model.config.text_config
    dec_id, sep_id, pad_id = cfg.bos_token_id, cfg.sep_token_id, cfg.pad_token_id
    n = len(images)

    # the RGB bytes the processor works on (after convert_to_rgb) = what
    # write_format_images hashed
    for img, info in zip(images, infos):
        rgb = np.moveaxis(ip.process_image(img, do_convert_rgb=True), 0, -1)
        assert rgb.dtype == np.uint8 and list(rgb.shape) == [info["size"][1], info["size"][0], 3]
        assert sha256_hex(np.ascontiguousarray(rgb).tobytes()) == info["rgb_sha256"], info["file"]

    pixel_values, resized_u8, pix_err = preprocess(processor, images, S)
    with torch.no_grad():
        vis = model.vision_model(pixel_values=pixel_values).last_hidden_state
        n_patches = (S // spec["vision"]["patch_size"]) ** 2
        assert vis.shape == (n, 1 + n_patches, spec["vision"]["hidden_size"])
    save_file(
        {
            "resized_u8": resized_u8.contiguous(),
            "pixel_values": pixel_values.contiguous(),
            "vision_last_hidden_state": vis.contiguous(),
        },
        out_dir / "expected_formats.safetensors",
    )

    by_name = {c[0]: c for c in CASES}
    case_specs = [by_name[c] for c in FORMAT_CASES]
    cases, stats = run_cases(name, model, processor, images, pixel_values, case_specs, sep_id)

    expected = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "scikit_image": skimage.__version__,
        "tifffile": tifffile.__version__,
        "image_backend": "pil (BlipProcessor.from_pretrained(dir, backend=\"pil\") -> "
                         "BlipImageProcessorPil)",
        "image_loading": "PIL.Image.open(path); load(); copy(); "
                         "PIL.ImageOps.exif_transpose(image); then the processor",
        "images": [info["file"] for info in infos],
        "image_info": infos,
        "image_size": S,
        "pixel_values_vs_resized_max_abs_diff": pix_err,
        "bos_token_id": dec_id,
        "sep_token_id": sep_id,
        "pad_token_id": pad_id,
        "cases": cases,
    }
    with open(out_dir / "expected_formats.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    return {"pixel_err": pix_err, "stats": stats, "cases": cases}


# ---------------------------------------------------------------------------
# Resize sweep: Pillow's exact Image.resize output for many shapes / filters
# ---------------------------------------------------------------------------
RESIZE_SEED = 20240611
R = Image.Resampling
# RGB cases cycle through this list (BICUBIC, the BLIP filter, is half of it).
RESIZE_FILTER_CYCLE = [R.BICUBIC, R.BILINEAR, R.BICUBIC, R.LANCZOS,
                       R.BICUBIC, R.BOX, R.BICUBIC, R.HAMMING]
# Shape families of the RGB cases, RESIZE_PER_KIND consecutive cases each.
# Fixed shapes ((w, h), (W, H)) come first in a family, random ones fill it up.
RESIZE_PER_KIND = 5
RESIZE_KINDS = [
    ("both_up", [((5, 6), (70, 30))]),
    # (h - H) == 2 * (w - W) in the second one: still horizontal first
    ("both_down", [((70, 70), (5, 5)), ((20, 30), (15, 20))]),
    # height shrinks by more than twice the width's shrink: vertical pass first
    ("both_down_vertical_first", [((20, 70), (14, 9)), ((20, 31), (15, 20))]),
    # width grows, height shrinks (always vertical first under the Pillow 13 rule)
    ("width_up_height_down", [((9, 70), (40, 5))]),
    ("width_down_height_up", [((70, 9), (5, 40))]),
    ("width_unchanged", [((23, 41), (23, 12)), ((17, 9), (17, 50))]),
    ("height_unchanged", [((41, 23), (12, 23)), ((9, 17), (50, 17))]),
    ("big_shrink", [((70, 33), (5, 30)), ((12, 70), (11, 5)), ((60, 30), (6, 7))]),
]
# Non-RGB sources, converted like transformers' convert_to_rgb, then BICUBIC.
RESIZE_CONVERTED = [
    ("RGBA", (31, 27), (64, 40)),
    ("RGBA", (57, 30), (16, 16)),
    ("RGBA", (13, 60), (44, 9)),
    ("LA", (45, 22), (48, 40)),
    ("LA", (26, 47), (9, 13)),
    ("LA", (60, 15), (21, 30)),
    ("L", (19, 33), (50, 21)),
    ("L", (66, 40), (7, 24)),
]
RESIZE_MAX_BYTES = 200_000


def resize_vertical_first(src: tuple[int, int], dst: tuple[int, int]) -> bool:
    """Pillow 13 runs the vertical pass first when the height shrinks, and by more
    than twice as many pixels as the width does."""
    (w, h), (W, H) = src, dst
    return (h - H) > 0 and (h - H) > 2 * (w - W)


def resize_shape_ok(kind: str, src: tuple[int, int], dst: tuple[int, int]) -> bool:
    (w, h), (W, H) = src, dst
    vf = resize_vertical_first(src, dst)
    return {
        "both_up": W > w and H > h,
        "both_down": W < w and H < h and not vf,
        "both_down_vertical_first": W < w and H < h and vf,
        "width_up_height_down": W > w and H < h,
        "width_down_height_up": W < w and H > h,
        "width_unchanged": W == w and H != h,
        "height_unchanged": H == h and W != w,
        "big_shrink": (w >= 8 * W and w - W >= 30) or (h >= 8 * H and h - H >= 30),
    }[kind]


def resize_random_shape(rng: np.random.Generator, kind: str):
    """Random shape of the given family; sizes are biased towards small ones to
    keep the fixture small (src in 5..=70, dst in 4..=70)."""
    def dim(lo: int) -> int:
        return int(lo + np.floor((71 - lo) * rng.random() ** 2))

    while True:
        src = (dim(5), dim(5))
        dst = (dim(4), dim(4))
        if kind == "width_unchanged":
            dst = (src[0], dst[1])
        elif kind == "height_unchanged":
            dst = (dst[0], src[1])
        elif kind == "big_shrink":
            axis = int(rng.integers(0, 3))  # 0: width, 1: height, 2: both
            big = int(rng.integers(50, 71))
            small = int(rng.integers(4, 7))
            src, dst = list(src), list(dst)
            for a in ((0,), (1,), (0, 1))[axis]:
                src[a], dst[a] = big, small
            src, dst = tuple(src), tuple(dst)
        if src[0] * src[1] + dst[0] * dst[1] > 1500:
            continue
        if resize_shape_ok(kind, src, dst):
            return src, dst


def resize_source(rng: np.random.Generator, size: tuple[int, int], mode: str) -> Image.Image:
    """uint8 noise blended with smooth gradients: the blend weight is itself a
    ramp, so one side of the image is smooth and the other one mostly noise."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    xn, yn = x / max(w - 1, 1), y / max(h - 1, 1)
    nch = {"RGB": 3, "RGBA": 4, "LA": 2, "L": 1}[mode]
    ang = rng.uniform(0, 2 * np.pi)
    mix = np.clip(0.5 + 0.7 * (np.cos(ang) * (xn - 0.5) + np.sin(ang) * (yn - 0.5)), 0, 1)
    chans = []
    for _ in range(nch):
        a, b = rng.uniform(-1, 1, size=2)
        grad = a * xn + b * yn
        grad = (grad - grad.min()) / max(np.ptp(grad), 1e-9) * 255.0  # spans 0..255
        noise = rng.integers(0, 256, size=(h, w)).astype(np.float64)
        chans.append((1 - mix) * grad + mix * noise)
    arr = np.clip(np.rint(np.stack(chans, axis=-1)), 0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA"):
        # alpha: fully transparent and fully opaque blocks, the rest varies
        a = arr[..., -1]
        a[: max(h // 3, 1), : max(w // 3, 1)] = 0
        a[-max(h // 3, 1):, -max(w // 3, 1):] = 255
        assert (a == 0).any() and (a == 255).any() and ((a > 0) & (a < 255)).any()
    img = Image.fromarray(arr[..., 0] if nch == 1 else arr, mode)
    assert img.mode == mode and img.size == size
    return img


def resize_to_rgb(img: Image.Image) -> Image.Image:
    """What transformers' convert_to_rgb does for these modes."""
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def write_resize_sweep(out_dir: Path) -> dict:
    out_dir.mkdir(parents=True)
    rng = np.random.default_rng(RESIZE_SEED)
    plan = []  # (mode, src, dst, filter)
    for kind, fixed in RESIZE_KINDS:
        shapes = list(fixed)
        while len(shapes) < RESIZE_PER_KIND:
            shapes.append(resize_random_shape(rng, kind))
        for src, dst in shapes:
            assert resize_shape_ok(kind, src, dst), (kind, src, dst)
            plan.append(("RGB", src, dst, RESIZE_FILTER_CYCLE[len(plan) % len(RESIZE_FILTER_CYCLE)]))
    for mode, src, dst in RESIZE_CONVERTED:
        plan.append((mode, src, dst, R.BICUBIC))

    tensors, cases = {}, []
    for i, (mode, src, dst, resample) in enumerate(plan):
        assert all(5 <= v <= 70 for v in src) and all(4 <= v <= 70 for v in dst), (src, dst)
        img = resize_source(rng, src, mode)
        rgb = resize_to_rgb(img)
        out = rgb.resize(dst, resample=resample)
        assert out.mode == "RGB" and out.size == dst
        src_arr = np.asarray(img)
        if src_arr.ndim == 2:
            src_arr = src_arr[..., None]
        tensors[f"src_{i}"] = np.ascontiguousarray(src_arr, dtype=np.uint8)
        tensors[f"out_{i}"] = np.ascontiguousarray(np.asarray(out), dtype=np.uint8)
        cases.append({
            "index": i,
            "mode": mode,
            "src_size": list(src),
            "dst_size": list(dst),
            "resample": int(resample),
            "vertical_first": resize_vertical_first(src, dst),
        })
    save_numpy_file(tensors, str(out_dir / "sweep.safetensors"))
    with open(out_dir / "sweep.json", "w", encoding="utf-8") as f:
        json.dump({"pillow": PIL.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    assert total < RESIZE_MAX_BYTES, total
    return {"cases": cases, "bytes": total}


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    # Keep README.md (hand-written), metrics/ (scripts/make_metric_fixtures.py's),
    # train/ (scripts/make_train_fixtures.py's), shapes-tiny-hf/
    # (scripts/check_in_transformers.py's), shard-outputs/ (scripts/read_shard_outputs.py's)
    # and ved/ (scripts/make_ved_fixtures.py's, which reads the images written here).
    keep = ("README.md", "metrics", "train", "shapes-tiny-hf", "shard-outputs", "ved")
    for child in sorted(FIXTURES.iterdir()):
        if child.name in keep:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()

    images = write_images(FIXTURES / "images")
    fmt_images, fmt_infos = write_format_images(FIXTURES / "images")
    print(f"== format images: {len(fmt_infos)} files, "
          f"{sum(i['bytes'] for i in fmt_infos)} bytes")
    for i in fmt_infos:
        print(f"  {i['file']:26s} {i['bytes']:6d} B  opened {i['opened_mode']:5s} "
              f"{i['stored_size'][0]}x{i['stored_size'][1]} -> {i['size'][0]}x{i['size'][1]}"
              f"  rgb sha256 {i['rgb_sha256'][:16]}")
    sweep = write_resize_sweep(FIXTURES / "resize")
    per = {}
    for c in sweep["cases"]:
        key = (c["mode"], R(c["resample"]).name)
        per[key] = per.get(key, 0) + 1
    print(f"== resize sweep: {len(sweep['cases'])} cases, {sweep['bytes']} bytes, "
          f"{sum(c['vertical_first'] for c in sweep['cases'])} vertical first; "
          + ", ".join(f"{m}/{f}: {n}" for (m, f), n in sorted(per.items())))
    for name, spec in CHECKPOINTS.items():
        res = build_checkpoint(name, spec, images, fmt_images, fmt_infos)
        for label, r in ((name, res), (f"{name} formats", res["formats"])):
            print(f"== {label}: max |pixel_values - normalise(resized_u8)| = {r['pixel_err']:.3g}")
            for case in r["cases"]:
                st = r["stats"][case["name"]]
                extra = f" beam_gap={case['min_beam_candidate_gap']:.4g}" if "min_beam_candidate_gap" in case else ""
                print(f"  {case['name']:18s} gap={case['min_top2_gap']:.4g}{extra} "
                      f"sep={st['ended_with_sep']}/{st['rows']} new={st['new_tokens']}")
                if "rows_differing_from_false" in st:
                    print(f"      rows differing from early_stopping=False: "
                          f"{st['rows_differing_from_false']}/{st['rows']}")
                for t in case["texts"]:
                    print(f"      {t!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
