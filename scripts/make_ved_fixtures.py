"""Generate the VisionEncoderDecoder reference fixtures used by the Rust tests.

The model family is transformers' ``VisionEncoderDecoderModel`` as used by
``nlpconnect/vit-gpt2-image-captioning`` (ViT encoder + GPT-2 decoder with
cross-attention), ``microsoft/trocr-base-*`` (ViT encoder + ``TrOCRForCausalLM``) and
``microsoft/trocr-small-*`` (DeiT encoder + ``TrOCRForCausalLM`` with sinusoidal
positions).

What it makes (everything under ``captioner-cli/tests/fixtures/ved/``, which is
deleted and rewritten; nothing else is touched):

* ``vit-gpt2/``: ViT (image 48, patch 8, hidden 24) + GPT-2 (n_embd 24, so no
  ``enc_to_dec_proj``), the layout of nlpconnect/vit-gpt2-image-captioning. Its
  ``model.safetensors`` additionally carries the causal-mask buffers old GPT-2
  checkpoints were saved with (``decoder.transformer.h.{i}.attn.bias`` /
  ``.attn.masked_bias`` / ``.crossattention.bias`` / ``.crossattention.masked_bias``),
  injected after ``save_pretrained``; transformers ignores them on load.
* ``vit-gpt2-proj/``: the same ViT + GPT-2 with n_embd 20, so that
  ``VisionEncoderDecoderModel`` creates ``enc_to_dec_proj`` (24 -> 20).
* ``trocr/``: ViT (image 40, patch 8, hidden 28) + ``TrOCRForCausalLM`` (d_model 32,
  ``cross_attention_hidden_size`` 28: no ``enc_to_dec_proj``), learned positions,
  ``layernorm_embedding``, ``scale_embedding``, gelu, like microsoft/trocr-base-*.
* ``trocr-deit/``: DeiT (``DeiTModel``: image 32, patch 8, hidden 20; a [CLS] *and*
  a distillation token, so 2 + 16 encoder tokens) + ``TrOCRForCausalLM`` (d_model 24,
  ``cross_attention_hidden_size`` 20: no ``enc_to_dec_proj``) configured like
  microsoft/trocr-small-*: fairseq sinusoidal positions
  (``use_learned_position_embeddings`` false, nothing stored), no
  ``layernorm_embedding``, relu, ``scale_embedding``.

Each checkpoint folder holds what ``save_pretrained`` writes for the model
(``config.json``, ``generation_config.json``, ``model.safetensors``), the image
processor (``preprocessor_config.json``, a ``ViTImageProcessor``: resize to S x S
bilinear, rescale 1/255, normalise mean = std = 0.5, no ``do_convert_rgb``, like the
hub checkpoints) and the tokenizer (``tokenizer.json`` + ``tokenizer_config.json``): a
tiny GPT-2 style byte-level BPE (``<|endoftext|>`` last) for the GPT-2 decoders, a
RoBERTa style byte-level BPE (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>``
last) for both TrOCR checkpoints, trained here with ``tokenizers`` on small inline
corpora. Plus, per checkpoint:

* ``expected.safetensors``: resized uint8 images, ``pixel_values``, encoder output,
  teacher-forced logits (``forward(pixel_values, labels=...)``) with its ``labels`` /
  ``decoder_input_ids`` (``trocr-deit``: also the sinusoidal position table
  ``decoder_sinusoidal_positions``); and the same preprocessing / encoder tensors
  (``rgb_*``) for the images the processor rejects, processed with
  ``do_convert_rgb=True``.
* ``expected.json``: versions, images, token ids, the teacher-forcing loss, the
  processor's behaviour per image mode, and ``model.generate`` results (greedy and
  beam search, with and without a forced decoder prompt) in the format of
  ``scripts/make_fixtures.py``'s ``expected.json`` ``cases``; plus the conditioning
  measurements (float32 vs float64, see below).

The input images are the files in ``captioner-cli/tests/fixtures/images/`` written
by ``scripts/make_fixtures.py`` (run that first; their sha256 is recorded). Note
that make_fixtures.py deletes every entry of ``fixtures/`` that is not on its keep
list, ``ved/`` included: run this script again after it. Every
image is loaded as ``Image.open`` + ``load`` + ``copy`` and then passed through
``PIL.ImageOps.exif_transpose``, like in make_fixtures.py.

All reference values are computed with the checkpoint, image processor and
tokenizer *reloaded from disk* (``from_pretrained``, PIL image backend). Everything
is deterministic (fixed seeds, one CPU thread, float32): two runs give
byte-identical files.

Conditioning: the weights are small enough (logits within +-10) that float32
rounding is far below the tolerances of the Rust tests (1e-4). Every checkpoint
is also run in float64 (``copy.deepcopy(model).double()`` on
``pixel_values.double()``), and the script asserts (and records) that the float32
teacher-forced logits and every beam case's ``sequences_scores`` are within
MAX_F32_VS_F64 = 2e-5 of the float64 ones, that float64 ``generate`` gives the same
sequences in every case, that every case's smallest top-2 gap is at least 1e-3
(beam cases: smallest gap between beam candidates at least 2e-4), and that
uniform noise of +-2e-4 on the processed scores changes no sequence.

How to run (from the repository root; same environment as make_fixtures.py,
i.e. ``pip install -r scripts/requirements-fixtures.txt``; only torch,
transformers, tokenizers, safetensors, numpy and Pillow are used):

    python scripts/make_ved_fixtures.py

No network access is needed: nothing is downloaded, the models are built from
configs with random weights.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import safetensors
import tokenizers
import torch
import transformers
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    DeiTConfig,
    GPT2Config,
    GPT2Tokenizer,
    LogitsProcessor,
    RobertaTokenizer,
    TrOCRConfig,
    TrOCRProcessor,
    ViTConfig,
    ViTImageProcessorPil,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
)
from transformers.image_utils import SizeDict

# The BLIP fixture script's generation probes: top-2 gaps and the noise check.
from make_fixtures import NoiseInjector, Top2Recorder, sha256_hex
from transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder import (
    shift_tokens_right,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "captioner-cli" / "tests" / "fixtures"
IMAGES_DIR = FIXTURES / "images"
OUT = FIXTURES / "ved"
MAX_TOTAL_BYTES = 5_000_000  # the whole ved/ folder

# The input images (written by scripts/make_fixtures.py), in batch order. Images
# the saved processor rejects (it has no do_convert_rgb) are left out of the main
# batch and processed separately with do_convert_rgb=True (the "rgb_" tensors).
IMAGE_FILES = [
    "odd_rgb.png", "wide_rgba.png", "gray.png", "tall_rgb.png",
    "photo_420_baseline.jpg", "photo_422_progressive.jpg", "photo_444_q95.jpg",
    "photo_cmyk.jpg", "photo_exif6.jpg", "photo_lossy.webp", "photo_lossy_alpha.webp",
    "photo_lossless.webp", "photo_lzw.tif", "photo_jpeg_ycbcr.tif", "photo_rgb16.tif",
]

# ---------------------------------------------------------------------------
# Tokenizer corpora (deterministic, inline)
# ---------------------------------------------------------------------------
CAPTION_CORPUS = """
a man riding a bike down the street
a dog sitting on the grass next to a tree
two people standing near a red bus
a cat lying on a bed with a white blanket
a plate of food on a wooden table
a group of people walking on the beach
a woman holding an umbrella in the rain
a black and white photo of a city street
a small bird sitting on a branch
a train on the tracks near a station
a boy playing with a ball in the park
a kitchen with a stove and a sink
a red car parked on the side of the road
two dogs running in a field of grass
a large clock tower in the middle of a city
a man and a woman sitting on a bench
a bowl of fruit on a table
a person riding a horse in a field
a young girl eating a slice of pizza
a cat sitting in front of a window
a plane flying in the blue sky
a boat on the water near the shore
a group of children playing soccer
a close up of a sandwich on a plate
a living room with a couch and a table
a man holding a cup of coffee
an old building with a large door
a herd of sheep standing on a hill
a giraffe standing next to a tree
a bus driving down a city street
a woman taking a photo of a dog
a snowy mountain under a cloudy sky
a bicycle leaning against a brick wall
a white plate with a piece of cake
a street sign on a pole near a building
a computer on a desk in an office
a man surfing on a wave in the ocean
a little boy sitting on a chair
a brown horse eating grass in a field
a photo of a cat and a dog
""".strip().split("\n")

OCR_CORPUS = """
The quick brown fox jumps over the lazy dog.
Invoice No. 1042, total amount: 87.50 EUR
Dear Sir or Madam, thank you for your letter.
Meeting at 10:30 in room 4B on Monday.
Handwritten notes from the 1987 lecture.
Please sign here and return the form.
Call me back at 555-0199 tomorrow.
Chapter 3: The River and the Old Mill
Total: 12 items, 3 boxes, 1 pallet.
Street name: Baker Street 221B, London
Receipt printed on 2024-06-11 at 09:15
It was the best of times, it was the worst of times.
Hello world! This is a short test line.
Order 77 shipped with tracking code AX93.
Page 14 of 20 - Confidential
Name: Anna Smith, Date of birth: 03/07/1990
""".strip().split("\n")

# Teacher-forcing text per image of the main batch (cycled).
# (Short: with ~40 merges most words are several byte-level tokens.)
TF_CAPTIONS = [
    "a cat on a bed",
    "two dogs on the grass",
    "a dog",
    "a man on a horse",
    "a plate of food",
    "a bus on the street",
]
TF_OCR_TEXTS = [
    "Hello world!",
    "No. 1042",
    "The",
    "Meeting at 10:30",
    "Page 14",
    "Dear Sir",
]
TF_MAX_LEN = 14

# Forced decoder prompts: [decoder_start] + the prompt's tokens (no special tokens).
PROMPTS = {"gpt2": "a photo of", "trocr": "The"}

# ---------------------------------------------------------------------------
# Checkpoints. Parameters are re-initialised (normal, std per group, see
# DEFAULT_INIT), the EOS row of the (tied) embedding / output projection is scaled
# by `eos_scale`, a fixed amount is added to the EOS logit (`eos_bias`) and all
# logits are scaled by `final_gain` (both through the last layernorm), so that
# captions end with EOS at varied lengths while the logits stay within +-10 (float32
# rounding far below 1e-4, see MAX_F32_VS_F64). The seeds / scales were picked by a
# one-off search (not part of this script): first final_gain for a logit scale of
# about 7-9.5, then eos_bias for EOS endings at varied lengths, then the conditions
# below (f32 vs f64, gaps, noise).
# ---------------------------------------------------------------------------
VIT_COMMON = dict(num_channels=3, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)

CHECKPOINTS = {
    "vit-gpt2": dict(
        kind="gpt2",
        seed=53438,
        init=dict(enc_weight=0.3, enc_embed=1.0, word_embed=1.0, pos_embed=0.5, dec_weight=0.4,
                  cross_attn=0.3, bias=0.1, eos_scale=0.75, eos_bias=18.29, final_gain=0.328),
        encoder=dict(image_size=48, patch_size=8, hidden_size=24, num_hidden_layers=2,
                     num_attention_heads=3, intermediate_size=37),
        decoder=dict(n_embd=24, n_layer=2, n_head=3, n_positions=40),
        old_gpt2_buffers=True,
    ),
    "vit-gpt2-proj": dict(
        kind="gpt2",
        seed=22201,
        init=dict(enc_weight=0.2, enc_embed=0.5, word_embed=0.5, pos_embed=0.5, dec_weight=0.4,
                  cross_attn=0.3, proj=0.3, bias=0.1, eos_scale=0.75, eos_bias=6.46,
                  final_gain=0.852),
        encoder=dict(image_size=48, patch_size=8, hidden_size=24, num_hidden_layers=2,
                     num_attention_heads=3, intermediate_size=37),
        decoder=dict(n_embd=20, n_layer=3, n_head=4, n_positions=40),
        old_gpt2_buffers=False,
    ),
    "trocr": dict(
        kind="trocr",
        seed=23224,
        init=dict(enc_weight=0.3, enc_embed=0.5, word_embed=0.3, pos_embed=0.3, dec_weight=0.3,
                  cross_attn=0.3, bias=0.1, eos_scale=1.0, eos_bias=3.31, final_gain=1.21),
        encoder=dict(image_size=40, patch_size=8, hidden_size=28, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=45),
        decoder=dict(d_model=32, decoder_layers=2, decoder_attention_heads=4,
                     decoder_ffn_dim=53, max_position_embeddings=64),
        old_gpt2_buffers=False,
    ),
    "trocr-deit": dict(
        kind="trocr",
        encoder_type="deit",
        seed=72868,
        init=dict(enc_weight=0.2, enc_embed=1.0, word_embed=0.3, embed_row_spread=0.5,
                  pos_embed=0.3, dec_weight=0.5, cross_attn=0.5, bias=0.1, eos_scale=1.0,
                  eos_bias=11.52, final_gain=0.521),
        encoder=dict(image_size=32, patch_size=8, hidden_size=20, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=33),
        decoder=dict(d_model=24, decoder_layers=2, decoder_attention_heads=4,
                     decoder_ffn_dim=41, max_position_embeddings=64,
                     activation_function="relu", use_learned_position_embeddings=False,
                     layernorm_embedding=False, scale_embedding=True),
        old_gpt2_buffers=False,
    ),
}

# TrOCRConfig settings of the "trocr" checkpoint (microsoft/trocr-base-*); a
# checkpoint's "decoder" entries override them
TROCR_DEFAULTS = dict(activation_function="gelu", use_learned_position_embeddings=True,
                      layernorm_embedding=True, scale_embedding=True)

DEFAULT_INIT = dict(
    enc_weight=0.3,   # ViT / DeiT linear + patch conv weights (and the pooler)
    enc_embed=0.5,    # cls (and DeiT distillation) token, encoder position embeddings
    word_embed=0.3,   # decoder token embeddings (tied with the LM head)
    embed_row_spread=0.0,  # each embedding row x exp(N(0, 1) * this)
    pos_embed=0.3,    # decoder position embeddings
    dec_weight=0.3,   # decoder self-attention / MLP weights
    cross_attn=0.3,   # decoder cross-attention weights
    proj=0.3,         # enc_to_dec_proj weight
    bias=0.1,         # all biases
    ln_noise=0.05,    # layernorm weight = 1 + noise, bias = noise
    eos_scale=1.0,    # factor on the EOS row of the token embedding
    eos_bias=0.0,     # added to the EOS logit through the last layernorm's bias (x final_gain)
    final_gain=1.0,   # factor on the last layernorm's weight and bias (= on all logits)
)

# name, uses the prompt, generate kwargs (beam cases also get
# return_dict_in_generate=True, output_scores=True). Keep new cases at the end.
CASES = [
    ("greedy_default", False, {}),
    ("greedy_prompt", True, dict(max_new_tokens=12)),
    ("greedy_penalties", False, dict(repetition_penalty=1.3, no_repeat_ngram_size=2,
                                     max_new_tokens=15)),
    ("beam3_lp", False, dict(num_beams=3, length_penalty=0.7, num_return_sequences=2,
                             max_new_tokens=15)),
    ("beam4_early", False, dict(num_beams=4, length_penalty=1.5, early_stopping=True,
                                max_new_tokens=14)),
    ("beam3_prompt", True, dict(num_beams=3, num_return_sequences=2, max_new_tokens=12)),
    ("greedy_min_new", False, dict(min_new_tokens=4, max_new_tokens=13)),
]
# generate cases also run on the do_convert_rgb=True batch of rejected images
RGB_CASES = ["greedy_default", "beam3_lp"]

# Robustness check: every case is re-run NOISE_TRIALS times with uniform noise in
# [-NOISE_EPS, NOISE_EPS] added to every processed score; the sequences must not
# change.
NOISE_EPS = 2e-4
NOISE_TRIALS = 5

# Conditioning (asserted per checkpoint, the measured values are recorded): every
# reference value is also computed with a float64 copy of the model
# (copy.deepcopy(model).double(), pixel_values.double()); float32 rounding must stay
# far below the tolerances the Rust tests use, and the recorded tokens must not
# depend on it.
MAX_ABS_LOGIT = 10.0       # teacher-forced logits (labels != -100)
MAX_F32_VS_F64 = 2e-5      # teacher-forced logits and beam sequences_scores
MIN_TOP2_GAP = 1e-3        # per case, min_top2_gap
MIN_BEAM_GAP = 2e-4        # per beam case, min_beam_candidate_gap

# Synthetic images for the per-mode processor probe (mode -> how it is made).
PROBE_MODES = ["RGB", "RGBA", "RGBX", "LA", "L", "1", "P", "P+transparency", "PA", "CMYK",
               "YCbCr", "HSV", "LAB", "I;16", "I;16 (<256)", "I", "F"]




# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------
def load_image(path: Path) -> Image.Image:
    with Image.open(path) as f:
        f.load()
        img = f.copy()
    return ImageOps.exif_transpose(img)


def probe_image(mode: str) -> Image.Image:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8), "RGB")
    if mode == "P+transparency":
        img = rgb.convert("P")
        img.info["transparency"] = 0
        return img
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, size=(9, 11), dtype=np.uint16))
    elif mode == "I;16 (<256)":
        img = Image.fromarray(rng.integers(0, 256, size=(9, 11), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(0, 256, size=(9, 11), dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.uniform(0, 255, size=(9, 11)).astype(np.float32))
    else:
        return rgb.convert(mode)
    assert img.mode == mode.split(" ")[0], (mode, img.mode)
    return img


def try_process(ip, img: Image.Image, **kw) -> dict:
    try:
        pv = ip(images=[img], return_tensors="pt", **kw)["pixel_values"]
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True, "shape": list(pv.shape)}


def mode_behaviour(ip) -> dict:
    """What the saved image processor (do_convert_rgb unset) and the same with
    do_convert_rgb=True do with each PIL mode."""
    out = {}
    for mode in PROBE_MODES:
        img = probe_image(mode)
        entry = {"pil_mode": img.mode, "default": try_process(ip, img),
                 "do_convert_rgb": try_process(ip, img, do_convert_rgb=True)}
        chans = len(img.getbands())
        if entry["default"]["ok"] and img.mode != "RGB":
            entry["note"] = (f"accepted without conversion: the {chans} raw {img.mode} "
                             "channels are used as if they were R, G, B")
        if img.mode in ("I;16", "I"):
            # Pillow's convert("RGB") clamps to 0..255, it does not rescale
            probe = Image.fromarray(np.array([[0, 100, 255, 256, 1000, 65535]],
                                             dtype=np.uint16 if img.mode == "I;16" else np.int32))
            got = np.asarray(probe.convert("RGB"))[0, :, 0].tolist()
            assert got == [0, 100, 255, 255, 255, 255], got
            entry["note"] = ("do_convert_rgb: Pillow's convert(\"RGB\") clamps each value to "
                             "0..255 (no rescaling): 0, 100, 255, 256, 1000, 65535 -> "
                             + ", ".join(map(str, got)))
        out[mode] = entry
    return out


# ---------------------------------------------------------------------------
# Tokenizers, processors
# ---------------------------------------------------------------------------
def train_bpe(corpus: list[str], vocab_size: int, special: list[str]) -> tuple[dict, list]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


def make_gpt2_tokenizer() -> GPT2Tokenizer:
    # 256 byte symbols + 43 merges; "<|endoftext|>" is then added last (id 299),
    # as 50256 is in GPT-2.
    vocab, merges = train_bpe(CAPTION_CORPUS, 299, [])
    assert len(vocab) == 299, len(vocab)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, add_prefix_space=False)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert eos == len(tok) - 1 == 299 and tok.eos_token_id == tok.bos_token_id == eos
    return tok


def make_roberta_tokenizer() -> RobertaTokenizer:
    vocab, merges = train_bpe(OCR_CORPUS, 299, ["<s>", "<pad>", "</s>", "<unk>"])
    assert len(vocab) == 299 and [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    tok = RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False)
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id,
            tok.mask_token_id, len(tok)) == (0, 1, 2, 3, 299, 300)
    return tok


def make_image_processor(size: int) -> ViTImageProcessorPil:
    return ViTImageProcessorPil(
        size={"height": size, "width": size},
        resample=PIL.Image.Resampling.BILINEAR,
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def make_config(spec: dict, tok) -> VisionEncoderDecoderConfig:
    enc_cls = DeiTConfig if spec.get("encoder_type") == "deit" else ViTConfig
    enc = enc_cls(**VIT_COMMON, **spec["encoder"])
    if spec["kind"] == "gpt2":
        eos = tok.eos_token_id
        dec = GPT2Config(vocab_size=len(tok), n_inner=None, activation_function="gelu_new",
                         add_cross_attention=True, is_decoder=True,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                         decoder_start_token_id=eos, **spec["decoder"])
        ids = dict(decoder_start_token_id=eos, pad_token_id=eos, eos_token_id=eos)
    else:
        dec = TrOCRConfig(vocab_size=len(tok),
                          cross_attention_hidden_size=spec["encoder"]["hidden_size"],
                          bos_token_id=0, pad_token_id=1, eos_token_id=2,
                          decoder_start_token_id=2, is_decoder=True,
                          **dict(TROCR_DEFAULTS, **spec["decoder"]))
        ids = dict(decoder_start_token_id=2, pad_token_id=1, eos_token_id=2)
    return VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, **ids)


@torch.no_grad()
def reinit_(model: VisionEncoderDecoderModel, spec: dict, eos_id: int) -> None:
    init = dict(DEFAULT_INIT, **spec.get("init", {}))
    gen = torch.Generator().manual_seed(spec["seed"])

    def normal_(p: torch.Tensor, std: float, mean: float = 0.0) -> None:
        p.copy_(torch.randn(p.shape, generator=gen) * std + mean)

    ln_params = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ln_params.update((f"{mod_name}.weight", f"{mod_name}.bias"))
    emb = model.decoder.get_input_embeddings().weight
    seen = set()
    for name, p in model.named_parameters():  # tied parameters are listed once
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name in ln_params:
            normal_(p, init["ln_noise"], 1.0 if name.endswith("weight") else 0.0)
        elif p is emb:
            normal_(p, init["word_embed"])
            if init["embed_row_spread"]:
                # log-normal row norms: a few tokens with large rows, i.e. peaked
                # next-token distributions at a moderate logit scale
                p.mul_(torch.exp(torch.randn((p.shape[0], 1), generator=gen)
                                 * init["embed_row_spread"]))
        elif name.endswith(("wpe.weight", "embed_positions.weight")):
            normal_(p, init["pos_embed"])
        elif name.endswith(("cls_token", "distillation_token", "embeddings.position_embeddings")):
            normal_(p, init["enc_embed"])
        elif name.endswith("bias"):
            normal_(p, init["bias"])
        elif name.startswith("encoder."):
            normal_(p, init["enc_weight"])
        elif name.startswith("enc_to_dec_proj."):
            normal_(p, init["proj"])
        elif ".crossattention." in name or ".encoder_attn." in name:
            normal_(p, init["cross_attn"])
        elif name.startswith("decoder."):
            normal_(p, init["dec_weight"])
        else:
            raise AssertionError(name)
    emb[eos_id] *= init["eos_scale"]
    # logits = final_ln(h) @ emb.T (tied, no bias): adding c * e / |e|^2 to the final
    # layernorm bias (e = the EOS row) adds exactly c to the EOS logit (and
    # c * e_t.e / |e|^2 to the others); final_gain then scales weight and bias, i.e.
    # all logits (c included)
    if hasattr(model.decoder, "transformer"):
        final_ln = model.decoder.transformer.ln_f
    else:
        final_ln = model.decoder.model.decoder.layers[-1].final_layer_norm
    e = emb[eos_id]
    final_ln.bias += init["eos_bias"] * e / e.dot(e)
    final_ln.weight *= init["final_gain"]
    final_ln.bias *= init["final_gain"]


def inject_old_gpt2_buffers(path: Path, n_layer: int, n_positions: int) -> list[str]:
    """Adds the causal-mask buffers old GPT-2 checkpoints carry (uint8 lower
    triangle [1, 1, P, P] as `bias`, float32 scalar -1e4 as `masked_bias`, for the
    self- and the cross-attention of every block) to model.safetensors."""
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tril = torch.tril(torch.ones((n_positions, n_positions), dtype=torch.uint8))
    added = []
    for i in range(n_layer):
        for att in ("attn", "crossattention"):
            prefix = f"decoder.transformer.h.{i}.{att}"
            tensors[f"{prefix}.bias"] = tril.view(1, 1, n_positions, n_positions).clone()
            tensors[f"{prefix}.masked_bias"] = torch.tensor(-1e4, dtype=torch.float32)
            added += [f"{prefix}.bias", f"{prefix}.masked_bias"]
    save_file(tensors, str(path), metadata=metadata)
    return added


def safetensors_listing(path: Path) -> list[list]:
    with safe_open(str(path), "pt") as f:
        return [[k, str(f.get_slice(k).get_dtype()), list(f.get_slice(k).get_shape())]
                for k in sorted(f.keys())]


# ---------------------------------------------------------------------------
# Generation helpers (as in make_fixtures.py)
# ---------------------------------------------------------------------------
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
        "decoder_start_token_id": gc.decoder_start_token_id,
        "bos_token_id": gc.bos_token_id,
        "eos_token_id": gc.eos_token_id,
        "pad_token_id": gc.pad_token_id,
    }


def describe_decoder_call(kwargs: dict) -> dict:
    """Compact, JSON-able description of one call of model.decoder.forward."""
    def t(v):
        if v is None:
            return None
        if isinstance(v, torch.Tensor):
            d = {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            if v.dtype in (torch.int64, torch.int32, torch.bool) and v.numel() <= 64:
                d["values"] = v.tolist()
            return d
        return type(v).__name__
    pkv = kwargs.get("past_key_values")
    return {
        "input_ids": t(kwargs.get("input_ids")),
        "attention_mask": t(kwargs.get("attention_mask")),
        "position_ids": t(kwargs.get("position_ids")),
        "encoder_hidden_states": t(kwargs.get("encoder_hidden_states")),
        "encoder_attention_mask": t(kwargs.get("encoder_attention_mask")),
        "past_key_values": None if pkv is None else type(pkv).__name__,
        "past_length": None if pkv is None else int(pkv.get_seq_length()),
        "other_kwargs": sorted(k for k, v in kwargs.items() if v is not None and k not in (
            "input_ids", "attention_mask", "position_ids", "encoder_hidden_states",
            "encoder_attention_mask", "past_key_values")),
    }


@torch.no_grad()
def run_case(model, tok, pixel_values, name, prompt, prompt_ids, gen_kwargs,
             noise=None, trace=False) -> dict:
    eos_id = model.generation_config.eos_token_id
    captured = {}
    orig_dec_ids = model._prepare_decoder_input_ids_for_generation
    orig_len = model._prepare_generated_length
    orig_lp = model._get_logits_processor
    orig_topk = model._get_top_k_continuations
    orig_fwd = model.decoder.forward

    def dec_ids_spy(*args, **kwargs):
        ids, kw = orig_dec_ids(*args, **kwargs)
        captured["decoder_input_ids"] = ids.clone()
        return ids, kw

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
        acc = kwargs["accumulated_log_probs"].double()
        k = kwargs["beams_to_keep"] + 1
        top = torch.topk(acc, k, dim=-1).values
        gaps = top[:, :-1] - top[:, 1:]
        gaps = gaps[(top[:, 1:] > -1e8)]
        if gaps.numel():
            captured["beam_gap"] = min(captured.get("beam_gap", float("inf")), float(gaps.min()))
        return orig_topk(*args, **kwargs)

    def fwd_spy(*args, **kwargs):
        assert not args
        captured.setdefault("trace", []).append(describe_decoder_call(kwargs))
        return orig_fwd(*args, **kwargs)

    n = pixel_values.shape[0]
    call = dict(pixel_values=pixel_values)
    prompt_len = 1
    if prompt_ids is not None:
        call["decoder_input_ids"] = torch.tensor([prompt_ids] * n, dtype=torch.int64)
        prompt_len = len(prompt_ids)
    captured["recorder"] = Top2Recorder(eos_id, prompt_len)

    model._prepare_decoder_input_ids_for_generation = dec_ids_spy
    model._prepare_generated_length = len_spy
    model._get_logits_processor = lp_spy
    model._get_top_k_continuations = topk_spy
    if trace:
        model.decoder.forward = fwd_spy
    try:
        out = model.generate(**call, **gen_kwargs)
    finally:
        del model._prepare_decoder_input_ids_for_generation, model._prepare_generated_length
        del model._get_logits_processor, model._get_top_k_continuations
        if trace:
            del model.decoder.forward

    is_beam = gen_kwargs.get("num_beams", 1) > 1
    if is_beam:
        sequences, scores = out.sequences, out.sequences_scores
    else:
        sequences, scores = out, None
    dec_ids = captured["decoder_input_ids"]
    assert dec_ids.shape[1] == prompt_len
    assert torch.equal(sequences[:, :prompt_len],
                       dec_ids.repeat_interleave(sequences.shape[0] // dec_ids.shape[0], dim=0))
    case = {"name": name, "prompt": prompt}
    if prompt_ids is not None:
        case["prompt_input_ids"] = call["decoder_input_ids"].tolist()
    case.update({
        "decoder_input_ids": dec_ids.tolist(),
        "kwargs": gen_kwargs,
        "effective": captured["effective"],
        "logits_processors": captured["processors"][:],
        "sequences": sequences.tolist(),
        "sequences_scores": None if scores is None else [float(s) for s in scores],
        "texts": tok.batch_decode(sequences, skip_special_tokens=True),
        "min_top2_gap": captured["recorder"].min_gap,
    })
    if is_beam:
        case["min_beam_candidate_gap"] = captured.get("beam_gap", float("inf"))
        case["sequences_scores_check"] = check_beam_scores(model, out, prompt_len, gen_kwargs, eos_id)
    if trace:
        case["_trace"] = captured["trace"]
    return case


def check_beam_scores(model, out, prompt_len: int, gen_kwargs: dict, eos_id: int) -> str:
    """Verify sequences_scores == sum of the chosen tokens' processed log-probs
    divided by (number of new tokens, EOS included) ** length_penalty."""
    lp = gen_kwargs.get("length_penalty", 1.0)
    trans = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices,
                                            normalize_logits=False)
    for i in range(out.sequences.shape[0]):
        n = int((out.beam_indices[i] >= 0).sum())
        gen = out.sequences[i, prompt_len:].tolist()
        expected_n = gen.index(eos_id) + 1 if eos_id in gen else len(gen)
        assert n == expected_n, (n, expected_n)
        ref = float(trans[i, :n].double().sum()) / n ** lp
        got = float(out.sequences_scores[i])
        assert abs(ref - got) <= 1e-4 * max(1.0, abs(ref)), (ref, got)
    return "sum(processed log-probs of the new tokens) / new_tokens ** length_penalty"


def eos_stats(case: dict, eos_id: int) -> dict:
    p = len(case["decoder_input_ids"][0])
    ended, new_lens = 0, []
    for row in case["sequences"]:
        gen = row[p:]
        if eos_id in gen:
            ended += 1
            new_lens.append(gen.index(eos_id) + 1)
        else:
            new_lens.append(len(gen))
    return {"ended_with_eos": ended, "rows": len(case["sequences"]), "new_tokens": new_lens}


def run_cases(name, model, model64, tok, pixel_values, case_specs, prompt, prompt_ids,
              trace_case=None):
    """Runs the generate cases; checks the gaps, repeats every case with the float64
    model (same sequences, beam sequences_scores within MAX_F32_VS_F64) and with
    noise (same sequences)."""
    eos_id = model.generation_config.eos_token_id
    cases, stats = [], {}
    for case_name, use_prompt, kwargs in case_specs:
        kw = dict(kwargs)
        if kw.get("num_beams", 1) > 1:
            kw.update(return_dict_in_generate=True, output_scores=True)
        p, pids = (prompt, prompt_ids) if use_prompt else (None, None)
        case = run_case(model, tok, pixel_values, case_name, p, pids, kw,
                        trace=case_name == trace_case)
        st = eos_stats(case, eos_id)
        case["ended_with_eos"] = st["ended_with_eos"]
        case["new_tokens"] = st["new_tokens"]
        assert case["min_top2_gap"] >= MIN_TOP2_GAP, (name, case_name, case["min_top2_gap"])
        if "min_beam_candidate_gap" in case:
            assert case["min_beam_candidate_gap"] >= MIN_BEAM_GAP, (
                name, case_name, case["min_beam_candidate_gap"])
        case64 = run_case(model64, tok, pixel_values.double(), case_name, p, pids, kw)
        assert case64["sequences"] == case["sequences"], (name, case_name, "float64")
        case["f64_same_sequences"] = True
        if case["sequences_scores"] is not None:
            d = max(abs(a - b)
                    for a, b in zip(case["sequences_scores"], case64["sequences_scores"]))
            assert d <= MAX_F32_VS_F64, (name, case_name, d)
            case["sequences_scores_f32_vs_f64_max_abs"] = d
        for t in range(NOISE_TRIALS):
            noisy = run_case(model, tok, pixel_values, case_name, p, pids, kw,
                             noise=NoiseInjector(NOISE_EPS, 1000 + t))
            assert noisy["sequences"] == case["sequences"], (name, case_name, t)
        case["noise_check"] = {"eps": NOISE_EPS, "trials": NOISE_TRIALS, "same_sequences": True}
        cases.append(case)
        stats[case_name] = st
    return cases, stats


# ---------------------------------------------------------------------------
# Per checkpoint
# ---------------------------------------------------------------------------
def preprocess(ip, images: list[Image.Image], S: int, **kw):
    """pixel_values from the processor, the uint8 images after (optional RGB
    conversion and) resize, before rescale, and how well the one reproduces the
    other."""
    pixel_values = ip(images=images, return_tensors="pt", **kw)["pixel_values"]
    assert pixel_values.dtype == torch.float32 and pixel_values.shape == (len(images), 3, S, S)
    resized = []
    for img in images:
        chw = ip.process_image(img, do_convert_rgb=kw.get("do_convert_rgb"))
        r = ip.resize(chw, size=SizeDict(height=S, width=S), resample=ip.resample)
        assert r.dtype == np.uint8 and r.shape == (3, S, S)
        resized.append(np.moveaxis(r, 0, -1))
    resized_u8 = torch.from_numpy(np.stack(resized))
    recon = (resized_u8.permute(0, 3, 1, 2).double() / 255.0 - 0.5) / 0.5
    pix_err = float((recon - pixel_values.double()).abs().max())
    assert pix_err < 1e-6, pix_err
    return pixel_values, resized_u8, pix_err


def tf_labels(kind: str, tok, n: int) -> tuple[torch.Tensor, list[str]]:
    texts = [(TF_CAPTIONS if kind == "gpt2" else TF_OCR_TEXTS)[i % 6] for i in range(n)]
    rows = []
    for text in texts:
        if kind == "gpt2":
            # GPT-2's tokenizer adds no special tokens: caption + <|endoftext|>
            ids = tok(text)["input_ids"] + [tok.eos_token_id]
        else:
            # RoBERTa template: <s> text </s>
            ids = tok(text)["input_ids"]
            assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.unk_token_id not in ids[:-1] or kind == "gpt2"
        rows.append(ids)
    L = max(len(r) for r in rows)
    assert L <= TF_MAX_LEN, L
    labels = torch.full((n, L), -100, dtype=torch.int64)
    for i, r in enumerate(rows):
        labels[i, : len(r)] = torch.tensor(r)
    return labels, texts


def build_checkpoint(name: str, spec: dict, images: dict[str, Image.Image],
                     image_sha: dict[str, str]) -> dict:
    out_dir = OUT / name
    out_dir.mkdir(parents=True)
    kind = spec["kind"]
    S = spec["encoder"]["image_size"]

    # ---- build and save ----
    torch.manual_seed(spec["seed"])
    tok = make_gpt2_tokenizer() if kind == "gpt2" else make_roberta_tokenizer()
    ip = make_image_processor(S)
    config = make_config(spec, tok)
    model = VisionEncoderDecoderModel(config).eval().float()
    reinit_(model, spec, config.eos_token_id)
    model.save_pretrained(out_dir, safe_serialization=True)
    # hub layout (nlpconnect / microsoft trocr): preprocessor_config.json + tokenizer files
    ip.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    injected = []
    if spec["old_gpt2_buffers"]:
        injected = inject_old_gpt2_buffers(out_dir / "model.safetensors",
                                           spec["decoder"]["n_layer"], spec["decoder"]["n_positions"])

    # ---- everything below uses what was reloaded from disk ----
    model2, loading_info = VisionEncoderDecoderModel.from_pretrained(out_dir, output_loading_info=True)
    model2.eval()
    sd1, sd2 = model.state_dict(), model2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    assert not loading_info["missing_keys"], loading_info
    # the old `.bias` buffers are dropped silently (GPT2PreTrainedModel.
    # _keys_to_ignore_on_load_unexpected), `.masked_bias` is reported as unexpected
    assert set(loading_info["unexpected_keys"]) == {k for k in injected
                                                     if k.endswith(".masked_bias")}, loading_info
    sinusoidal = None
    if kind == "trocr" and not model2.config.decoder.use_learned_position_embeddings:
        # TrOCRSinusoidalPositionalEmbedding keeps its table in a plain attribute
        # (`weights`, not a parameter or buffer): from_pretrained (which builds the
        # model on the meta device) leaves it a meta tensor in transformers 5.23, and
        # forward then fails ("Cannot copy out of meta tensor"). Rebuild it as
        # __init__ does.
        ep = model2.decoder.model.decoder.embed_positions
        was_meta = bool(ep.weights.is_meta)
        ep.weights = ep.get_embedding(ep.weights.shape[0], ep.embedding_dim, ep.padding_idx)
        ref = model.decoder.model.decoder.embed_positions.weights
        assert torch.equal(ep.weights, ref) and ep.weights.dtype == torch.float32
        sinusoidal = {
            "table": ep.weights.clone(),
            "json": {
                "rows": ep.weights.shape[0], "dim": ep.embedding_dim,
                "padding_idx": ep.padding_idx, "offset": ep.offset,
                "meta_after_from_pretrained": was_meta,
                "workaround": "embed_positions.weights = embed_positions.get_embedding(rows, "
                              "dim, padding_idx) after from_pretrained"
                              + (" (it was a meta tensor)" if was_meta else ""),
                "definition": "half = dim // 2; f_j = exp(-j * ln(10000) / (half - 1)), j < half; "
                              "row p = [sin(p * f_j) for j] + [cos(p * f_j) for j] (float32); "
                              "row padding_idx = 0; position of token i = padding_idx + "
                              "(number of non-pad tokens up to i (+ past length)) for non-pad "
                              "tokens, padding_idx for pad tokens",
            },
        }
    model = model2
    # float64 copy for the conditioning checks (TrOCR's sinusoidal position table is
    # a plain float32 attribute, not a buffer, and stays float32: the values are
    # promoted when they are added)
    model64 = copy.deepcopy(model).double()
    if kind == "gpt2":
        ip = AutoImageProcessor.from_pretrained(out_dir, backend="pil")
        tok = AutoTokenizer.from_pretrained(out_dir)
        processor_class = "none (AutoImageProcessor + AutoTokenizer, like nlpconnect)"
    else:
        processor = TrOCRProcessor.from_pretrained(out_dir, backend="pil")
        ip, tok = processor.image_processor, processor.tokenizer
        processor_class = "TrOCRProcessor"
    assert type(ip).__name__ == "ViTImageProcessorPil" and ip.backend == "pil", type(ip)
    assert ip.do_convert_rgb is None
    cfg = model.config
    gc = model.generation_config
    start_id, eos_id, pad_id = cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id
    assert (gc.decoder_start_token_id, gc.eos_token_id, gc.pad_token_id) == (start_id, eos_id, pad_id)
    has_proj = hasattr(model, "enc_to_dec_proj")
    assert has_proj == (name == "vit-gpt2-proj"), name
    tensors_listing = safetensors_listing(out_dir / "model.safetensors")
    stored = {k for k, _, _ in tensors_listing}
    tied_key = ("decoder.lm_head.weight" if kind == "gpt2" else "decoder.output_projection.weight")
    assert tied_key not in stored, tied_key
    assert model.decoder.get_output_embeddings().weight is model.decoder.get_input_embeddings().weight

    # ---- which images the processor takes as they are ----
    modes = mode_behaviour(ip)
    per_image, main_names, rgb_names = [], [], []
    for fname, img in images.items():
        d = try_process(ip, img)
        c = try_process(ip, img, do_convert_rgb=True)
        assert c["ok"], (fname, c)
        per_image.append({"file": fname, "sha256": image_sha[fname], "mode": img.mode,
                          "size": list(img.size), "default": d})
        (main_names if d["ok"] else rgb_names).append(fname)

    # ---- preprocessing, encoder, teacher forcing on the main batch ----
    main_imgs = [images[n] for n in main_names]
    pixel_values, resized_u8, pix_err = preprocess(ip, main_imgs, S)
    n_img = len(main_imgs)
    labels, tf_texts = tf_labels(kind, tok, n_img)
    # [CLS] (+ DeiT's distillation token) + patches
    T = (2 if spec.get("encoder_type") == "deit" else 1) + (S // spec["encoder"]["patch_size"]) ** 2
    with torch.no_grad():
        enc = model.encoder(pixel_values=pixel_values).last_hidden_state
        assert enc.shape == (n_img, T, spec["encoder"]["hidden_size"])
        out = model(pixel_values=pixel_values, labels=labels)
        dec_in = shift_tokens_right(labels, pad_id, start_id)
        out2 = model(pixel_values=pixel_values, decoder_input_ids=dec_in)
        assert torch.equal(out.logits, out2.logits)
        logits = out.logits
        assert logits.shape == (n_img, labels.shape[1], len(tok))
        # conditioning: the same in float64
        enc64 = model64.encoder(pixel_values=pixel_values.double()).last_hidden_state
        enc_f64_err = float((enc.double() - enc64).abs().max())
        logits64 = model64(pixel_values=pixel_values.double(), decoder_input_ids=dec_in).logits
        assert logits64.dtype == torch.float64
        mask = labels != -100
        logits_f64_err = float((logits.double() - logits64)[mask].abs().max())
        max_abs_logit = float(logits[mask].abs().max())
        assert max_abs_logit <= MAX_ABS_LOGIT, (name, max_abs_logit)
        assert logits_f64_err <= MAX_F32_VS_F64, (name, logits_f64_err)
        ref_loss = torch.nn.functional.cross_entropy(
            logits.double().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        # float32 mean vs a float64 recomputation
        assert abs(float(ref_loss) - float(out.loss)) <= 1e-6 * max(1.0, float(ref_loss)), (
            float(ref_loss), float(out.loss))
        tensors = {
            "resized": resized_u8.contiguous(),
            "pixel_values": pixel_values.contiguous(),
            "encoder_hidden": enc.contiguous(),
        }
        if has_proj:
            tensors["encoder_hidden_proj"] = model.enc_to_dec_proj(enc).contiguous()
        tensors.update({
            "labels": labels,
            "decoder_input_ids": dec_in,
            "logits": logits.float().contiguous(),
        })
        if sinusoidal is not None:
            tensors["decoder_sinusoidal_positions"] = sinusoidal["table"].contiguous()
        # ---- the images the processor rejects, with do_convert_rgb=True ----
        rgb_imgs = [images[n] for n in rgb_names]
        rgb_pv, rgb_resized, rgb_err = preprocess(ip, rgb_imgs, S, do_convert_rgb=True)
        rgb_enc = model.encoder(pixel_values=rgb_pv).last_hidden_state
        rgb_enc64 = model64.encoder(pixel_values=rgb_pv.double()).last_hidden_state
        rgb_enc_f64_err = float((rgb_enc.double() - rgb_enc64).abs().max())
        tensors.update({
            "rgb_resized": rgb_resized.contiguous(),
            "rgb_pixel_values": rgb_pv.contiguous(),
            "rgb_encoder_hidden": rgb_enc.contiguous(),
        })
    save_file(tensors, str(out_dir / "expected.safetensors"))

    # ---- generation ----
    prompt = PROMPTS[kind]
    prompt_ids = [start_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    cases, stats = run_cases(name, model, model64, tok, pixel_values, CASES, prompt, prompt_ids,
                             trace_case="greedy_prompt")
    trace = None
    for c in cases:
        if "_trace" in c:
            trace = c.pop("_trace")
    by_name = {c[0]: c for c in CASES}
    rgb_cases, rgb_stats = run_cases(name, model, model64, tok, rgb_pv,
                                     [by_name[c] for c in RGB_CASES], prompt, prompt_ids)

    # the texts are what the `tokenizers` library (the Rust crate's Python binding)
    # decodes from tokenizer.json alone
    raw_tok = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    for c in cases + rgb_cases:
        assert raw_tok.decode_batch(c["sequences"], skip_special_tokens=True) == c["texts"], c["name"]

    expected = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "model_class": "VisionEncoderDecoderModel",
        "encoder_class": type(model.encoder).__name__,
        "decoder_class": type(model.decoder).__name__,
        "attn_implementation": {"encoder": model.encoder.config._attn_implementation,
                                "decoder": model.decoder.config._attn_implementation},
        "image_backend": f"pil ({'TrOCRProcessor' if kind == 'trocr' else 'AutoImageProcessor'}"
                         f".from_pretrained(dir, backend=\"pil\") -> {type(ip).__name__})",
        "processor_class": processor_class,
        "image_loading": "PIL.Image.open(path); load(); copy(); "
                         "PIL.ImageOps.exif_transpose(image); then the processor",
        "image_size": S,
        "patch_size": spec["encoder"]["patch_size"],
        "encoder_tokens": T,
        "encoder_f32_vs_f64_max_abs": enc_f64_err,
        "rgb_encoder_f32_vs_f64_max_abs": rgb_enc_f64_err,
        "images": main_names,
        "rgb_images": rgb_names,
        "image_info": per_image,
        "mode_behaviour": modes,
        "pixel_values_vs_resized_max_abs_diff": pix_err,
        "rgb_pixel_values_vs_resized_max_abs_diff": rgb_err,
        "vocab_size": len(tok),
        "decoder_start_token_id": start_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "has_enc_to_dec_proj": has_proj,
        "tied_lm_head": {"absent_from_safetensors": tied_key,
                         "tied_to": ("decoder.transformer.wte.weight" if kind == "gpt2"
                                     else "decoder.model.decoder.embed_tokens.weight")},
        "injected_old_buffers": injected,
        "sinusoidal_positions": None if sinusoidal is None else sinusoidal["json"],
        "loading_info": {k: sorted(v) if isinstance(v, (set, list)) else str(v)
                         for k, v in loading_info.items()},
        "model_safetensors": tensors_listing,
        "teacher_forcing": {
            "texts": tf_texts,
            "labels": "tokenizer(text).input_ids" + (" + [eos]" if kind == "gpt2" else "")
                      + ", padded with -100",
            "decoder_input_ids": "shift_tokens_right(labels, pad, decoder_start): "
                                 "[start] + labels[:-1], -100 -> pad",
            "decoder_attention_mask": None,
            "loss": float(out.loss),
            "loss_definition": "CrossEntropyLoss (mean over labels != -100) of logits vs labels "
                               "(no extra shift)",
            "max_abs_logit": max_abs_logit,
            "f32_vs_f64_logits_max_abs": logits_f64_err,
            "f32_vs_f64_definition": "max |logits - logits of copy.deepcopy(model).double() on "
                                     "pixel_values.double()| over positions with labels != -100",
        },
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "texts_check": "tokenizers.Tokenizer.from_file(\"tokenizer.json\").decode_batch(sequences, "
                       "skip_special_tokens=True) == texts, for every case",
        "generate_decoder_calls": {"case": "greedy_prompt", "calls": trace},
        "cases": cases,
        "rgb_cases": rgb_cases,
    }
    with open(out_dir / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    return {"pix_err": pix_err, "max_abs_logit": max_abs_logit, "logits_f64_err": logits_f64_err,
            "enc_f64_err": max(enc_f64_err, rgb_enc_f64_err), "stats": stats, "cases": cases,
            "rgb_stats": rgb_stats, "rgb_cases": rgb_cases, "loss": float(out.loss),
            "main": main_names, "rgb": rgb_names}


def check_variety(name: str, res: dict) -> None:
    """Across the cases some rows end with EOS before the length limit and some
    run to it."""
    ended = sum(st["ended_with_eos"] for st in res["stats"].values())
    rows = sum(st["rows"] for st in res["stats"].values())
    lens = {n for st in res["stats"].values() for n in st["new_tokens"]}
    assert 0 < ended < rows, (name, ended, rows)
    assert len(lens) >= 4, (name, lens)


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for fname in IMAGE_FILES:
        assert (IMAGES_DIR / fname).is_file(), f"{fname}: run scripts/make_fixtures.py first"
    images = {f: load_image(IMAGES_DIR / f) for f in IMAGE_FILES}
    image_sha = {f: sha256_hex((IMAGES_DIR / f).read_bytes()) for f in IMAGE_FILES}
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name, spec in CHECKPOINTS.items():
        res = build_checkpoint(name, spec, images, image_sha)
        check_variety(name, res)
        print(f"== {name}: loss {res['loss']:.4f}, main batch {len(res['main'])} images, "
              f"rgb batch {res['rgb']}, pixel err {res['pix_err']:.3g}")
        print(f"  max|logit| {res['max_abs_logit']:.3g}, f32 vs f64: logits "
              f"{res['logits_f64_err']:.3g}, encoder {res['enc_f64_err']:.3g}")
        for label, cases, stats in (("", res["cases"], res["stats"]),
                                    ("rgb ", res["rgb_cases"], res["rgb_stats"])):
            for case in cases:
                st = stats[case["name"]]
                extra = (f" beam_gap={case['min_beam_candidate_gap']:.3g} "
                         f"f64_score_diff={case['sequences_scores_f32_vs_f64_max_abs']:.3g}"
                         if "min_beam_candidate_gap" in case else "")
                print(f"  {label}{case['name']:18s} gap={case['min_top2_gap']:.3g}{extra} "
                      f"eos={st['ended_with_eos']}/{st['rows']} new={st['new_tokens']}")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"== ved/: {total} bytes")
    assert total < MAX_TOTAL_BYTES, total
    return 0


if __name__ == "__main__":
    sys.exit(main())
