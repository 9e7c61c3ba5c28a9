"""Generate the training-step reference fixture used by the Rust tests.

What it makes (everything under ``captioner-cli/tests/fixtures/train/``; that folder,
and only that folder, is deleted and recreated on every run):

* ``expected.safetensors``: one BLIP caption fine-tuning batch (inputs, labels),
  the logits, dL/dlogits, the gradients of 14 parameters (torch autograd), and the
  values of 3 parameters after one clipped AdamW step.
* ``expected.json``: losses, gradient norm, the batch as token ids / tokens, the
  captions before and after ``pre_caption``, the parameter names, versions and the
  exact recipe (below) as a list of strings.

The model is the existing tiny random checkpoint ``captioner-cli/tests/fixtures/tiny-a/``
(written by ``scripts/make_fixtures.py``; no new weights are committed), loaded with
``BlipForConditionalGeneration.from_pretrained(dir, attn_implementation="eager")`` and
``BlipProcessor.from_pretrained(dir, backend="pil")``. The images are
``captioner-cli/tests/fixtures/images/{odd_rgb,wide_rgba,gray}.png``.

How to run (from the repository root, in the fixture venv):

    python -m venv .venv-fixtures
    . .venv-fixtures/bin/activate
    pip install -r scripts/requirements-fixtures.txt
    python scripts/make_train_fixtures.py

No network access is needed. The output is deterministic (eval mode, float32, one CPU
thread, ``torch.use_deterministic_algorithms(True)``, no random numbers are drawn): two
runs give byte-identical files.

The recipe (LAVIS ``BlipCaption.forward`` / ``XBertLMHeadDecoder.forward_loss`` /
``BertLMHeadModel.forward`` with the ``blip_caption`` text processor; the Rust side
implements exactly this):

1. Images: ``pixel_values = processor(images=[odd_rgb, wide_rgba, gray]).pixel_values``
   (BLIP eval preprocessing: convert to RGB (alpha composited onto white), bicubic
   resize to 64x64, /255, CLIP mean/std), float32 ``[3, 3, 64, 64]``. No train-time
   augmentation.
2. ``pre_caption`` (LAVIS ``BlipCaptionProcessor.pre_caption``, max_words = 30 as in
   BLIP's COCO caption training set):
   ``c = re.sub(r"([.!\\"()*#:;~])", " ", caption.lower())``;
   ``c = re.sub(r"\\s{2,}", " ", c)`` (only runs of 2+ whitespace characters become one
   space; a single tab/newline is kept); ``c = c.rstrip("\\n")``; ``c = c.strip(" ")``;
   ``words = c.split(" ")``; if ``len(words) > 30``: ``c = " ".join(words[:30])``.
   Commas, apostrophes, hyphens, ``?`` etc. are kept (the BERT tokenizer splits them).
3. ``text = "a picture of " + pre_caption(caption)`` (prompt with a trailing space).
4. ``enc = tokenizer(texts, padding="longest", truncation=True, max_length=40)``:
   ``[CLS] ... [SEP]`` then ``[PAD]`` (id 0) on the right; truncation drops content
   tokens from the end and keeps ``[SEP]``; ``attention_mask`` is 1 on real tokens.
5. ``input_ids[:, 0] = bos_token_id`` (``[DEC]``, id 188 in tiny-a = the tokenizer's
   ``bos_token_id`` = ``config.text_config.bos_token_id``), replacing ``[CLS]`` (2).
6. ``labels = input_ids`` with ``labels[input_ids == pad_token_id] = -100`` and
   ``labels[:, :prompt_length] = -100``, where
   ``prompt_length = len(tokenizer("a picture of ").input_ids) - 1`` = 4
   (``[CLS] a picture of``; the ``[SEP]`` is not counted).
7. ``logits = model(pixel_values=pixel_values, input_ids=input_ids,
   attention_mask=attention_mask).logits`` (no ``labels`` passed, so HF's internal loss,
   whose label smoothing comes from ``config.label_smoothing`` = 0.0, is not used).
   Inside: vision encoder (``last_hidden_state`` = ``post_layernorm`` output, all 17
   tokens) -> text decoder with a causal + key-padding self-attention mask (additive,
   ``torch.finfo(float32).min`` at masked keys) and cross-attention to all image tokens
   (no encoder mask); text embeddings = word + absolute position (0..L-1), then
   LayerNorm (no token-type embeddings); GELU is the exact erf GELU.
8. ``loss = CrossEntropyLoss(label_smoothing=0.1, reduction="mean", ignore_index=-100)(
   logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))``, i.e. per counted
   position ``0.9 * (-log p[target]) + 0.1 * mean_v(-log p[v])``, averaged over the
   positions whose label is not -100. ``loss_no_smoothing``: same with 0.0.
9. Gradients: ``loss.backward()`` (the 0.1-smoothed loss) in ``model.eval()`` (dropout
   off; its probabilities are 0.0 in tiny-a anyway) under ``torch.enable_grad()``.
   The LM head weight ``text_decoder.cls.predictions.decoder.weight`` IS tied to
   ``text_decoder.bert.embeddings.word_embeddings.weight`` (the same Parameter; and
   ``cls.predictions.decoder.bias`` is ``cls.predictions.bias``), so the recorded
   word-embedding gradient is the sum of the embedding-lookup part and the LM-head part
   (both parts are recorded too). ``word_embeddings`` has ``padding_idx = 0``: the
   lookup part of row 0 is always zero (irrelevant here: ``[PAD]`` only sits at
   positions whose outputs get zero gradient).
10. Optimizer step (our addition; BLIP/LAVIS do not clip): with the gradients of 9,
    ``total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)`` over all
    (deduplicated: the tied weight counted once) parameters: L2 norm of all gradient
    elements; every gradient is multiplied by ``min(1, 1.0 / (total_norm + 1e-6))``.
    Then ``torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0.05)`` steps once, weight decay on ALL parameters (as BLIP's
    ``train_caption.py``; LAVIS's runner instead exempts ``ndim < 2`` and names with
    ``bias``/``ln``/``bn``). Step 1: ``p = p * (1 - lr * wd)``; ``m = 0.1 g``;
    ``v = 0.001 g^2``; ``p = p - (lr / (1 - 0.9)) * m / (sqrt(v) / sqrt(1 - 0.999) + eps)``.
11. Frozen vision variant: fresh model, every ``vision_model.*`` parameter
    ``requires_grad = False``: same loss; vision grads are ``None``; the text grads are
    the same as in 9 (checked here, not stored).

Contents of ``expected.safetensors``: ``pixel_values`` f32 [3,3,64,64];
``input_ids``, ``attention_mask``, ``labels`` int64 [3, L]; ``logits`` f32 [3, L, V];
``grad_logits`` f32 [3, L, V] (dloss/dlogits); ``vision_last_hidden_state`` f32
[3, 17, 32]; ``grad.<name>`` f32 for each name in ``GRAD_NAMES``;
``grad_tied_lookup.<word_embeddings>`` and ``grad_tied_lm_head.<word_embeddings>`` (the
two parts of the tied gradient); ``after_step.<name>`` f32 for each name in
``STEP_NAMES``. Parameter names are those of ``model.named_parameters()`` (= the
safetensors names of tiny-a's ``model.safetensors``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
import safetensors
import tokenizers
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import BlipForConditionalGeneration, BlipProcessor

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "captioner-cli" / "tests" / "fixtures"
MODEL_DIR = FIXTURES / "tiny-a"
IMAGE_DIR = FIXTURES / "images"
OUT_DIR = FIXTURES / "train"

IMAGES = ["odd_rgb.png", "wide_rgba.png", "gray.png"]
# Raw captions: capitals, LAVIS-stripped punctuation, kept commas, repeated /
# leading / trailing whitespace, a newline, one out-of-vocabulary word ("bright" ->
# [UNK]). The third one is cut by pre_caption (more than 30 words) AND by the
# tokenizer (more than 40 tokens after that).
CAPTIONS = [
    "A man riding a horse, on the beach!",
    '  Two "dogs"~\n',
    "A red (bright) bus parked near a long city street: tall buildings, many people "
    "walking, two white dogs sitting next to small cars; trees and signs in front of "
    "the old building with a large clock on the wall.",
]
PROMPT = "a picture of "
MAX_WORDS = 30
MAX_TXT_LEN = 40
LABEL_SMOOTHING = 0.1
LR, BETAS, EPS, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-3, (0.9, 0.999), 1e-8, 0.05, 1.0
MAX_BYTES = 1_500_000

WORD_EMB = "text_decoder.bert.embeddings.word_embeddings.weight"
GRAD_NAMES = [
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.position_embedding",
    "vision_model.encoder.layers.0.self_attn.qkv.weight",
    "vision_model.encoder.layers.0.layer_norm1.weight",
    "vision_model.post_layernorm.weight",
    WORD_EMB,
    "text_decoder.bert.embeddings.LayerNorm.weight",
    "text_decoder.bert.encoder.layer.0.attention.self.query.weight",
    "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
    "text_decoder.bert.encoder.layer.0.crossattention.self.value.bias",
    "text_decoder.bert.encoder.layer.0.output.dense.weight",
    "text_decoder.cls.predictions.transform.dense.weight",
    "text_decoder.cls.predictions.bias",
]
STEP_NAMES = [
    "text_decoder.cls.predictions.bias",
    "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
    "vision_model.embeddings.patch_embedding.weight",
]

RECIPE = [
    "pixel_values = BlipProcessor(images=[odd_rgb.png, wide_rgba.png, gray.png]).pixel_values "
    "(tiny-a processor, PIL backend: RGB conversion with alpha onto white, bicubic resize to "
    "64x64, rescale 1/255, CLIP mean/std), float32 [3,3,64,64]",
    "pre_caption (LAVIS BlipCaptionProcessor, max_words=30): c = re.sub(r'([.!\"()*#:;~])', ' ', "
    "caption.lower()); c = re.sub(r'\\s{2,}', ' ', c); c = c.rstrip('\\n'); c = c.strip(' '); "
    "words = c.split(' '); if len(words) > 30: c = ' '.join(words[:30])",
    "text = 'a picture of ' + pre_caption(caption)",
    "enc = tokenizer(texts, padding='longest', truncation=True, max_length=40, "
    "return_attention_mask=True): [CLS] tokens [SEP] [PAD]...; truncation removes content "
    "tokens from the end and keeps [SEP]",
    "input_ids = enc.input_ids; input_ids[:, 0] = bos_token_id ([DEC])",
    "labels = input_ids.masked_fill(input_ids == pad_token_id, -100); labels[:, :prompt_length] = -100; "
    "prompt_length = len(tokenizer('a picture of ').input_ids) - 1",
    "logits = BlipForConditionalGeneration(pixel_values=pixel_values, input_ids=input_ids, "
    "attention_mask=enc.attention_mask).logits (no labels argument; eval mode = no dropout; float32)",
    "loss = CrossEntropyLoss(label_smoothing=0.1, reduction='mean', ignore_index=-100)"
    "(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))",
    "loss_no_smoothing = the same with label_smoothing=0.0 (not used for the gradients)",
    "loss.backward(); gradients of all parameters (the LM-head decoder weight is tied to "
    "text_decoder.bert.embeddings.word_embeddings.weight: one parameter, gradients summed)",
    "grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0) (L2 over all "
    "unique parameters' gradient elements, returned before clipping; grads *= "
    "min(1, 1.0 / (grad_norm + 1e-6)))",
    "torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, "
    "weight_decay=0.05).step() once, weight decay on all parameters (decoupled: "
    "p *= 1 - lr*wd, then the Adam update with bias correction)",
    "frozen vision: vision_model.* requires_grad=False -> same loss, vision grads None, "
    "text grads unchanged",
]


def pre_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """LAVIS ``BlipCaptionProcessor.pre_caption`` verbatim."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n")
    caption = caption.strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def load_model() -> BlipForConditionalGeneration:
    model = BlipForConditionalGeneration.from_pretrained(MODEL_DIR, attn_implementation="eager")
    model = model.float().eval()
    assert not model.training
    return model


def load_images() -> list[Image.Image]:
    images = []
    for name in IMAGES:
        with Image.open(IMAGE_DIR / name) as f:
            f.load()
            images.append(f.copy())
    return images


def ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    V = logits.shape[-1]
    fn = torch.nn.CrossEntropyLoss(label_smoothing=smoothing, reduction="mean", ignore_index=-100)
    return fn(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)

    processor = BlipProcessor.from_pretrained(MODEL_DIR, backend="pil")
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil"
    tok = processor.tokenizer
    model = load_model()
    cfg = model.config.text_config
    dec_id, pad_id, sep_id, cls_id, unk_id = (
        tok.bos_token_id, tok.pad_token_id, tok.sep_token_id, tok.cls_token_id, tok.unk_token_id)
    assert tok.convert_ids_to_tokens(dec_id) == "[DEC]"
    assert (dec_id, pad_id, sep_id) == (cfg.bos_token_id, cfg.pad_token_id, cfg.sep_token_id)
    V = cfg.vocab_size
    assert len(tok) == V

    # ---- tied weights ----
    td = model.text_decoder
    tied_weight = td.cls.predictions.decoder.weight is td.bert.embeddings.word_embeddings.weight
    tied_bias = td.cls.predictions.decoder.bias is td.cls.predictions.bias
    assert tied_weight and tied_bias
    padding_idx = td.bert.embeddings.word_embeddings.padding_idx
    params = dict(model.named_parameters())
    for n in GRAD_NAMES + STEP_NAMES:
        assert n in params, n
    assert "text_decoder.cls.predictions.decoder.weight" not in params  # deduplicated

    # ---- batch ----
    images = load_images()
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    assert pixel_values.dtype == torch.float32 and pixel_values.shape == (3, 3, 64, 64)
    # same preprocessing as the tiny-a inference fixture (its first three images)
    from safetensors.torch import load_file
    ref = load_file(MODEL_DIR / "expected.safetensors")["pixel_values"]
    assert torch.equal(ref[:3], pixel_values)

    pre = [pre_caption(c) for c in CAPTIONS]
    texts = [PROMPT + c for c in pre]
    words_before = [len(re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", c.lower()))
                        .rstrip("\n").strip(" ").split(" ")) for c in CAPTIONS]
    pre_truncated = [w > MAX_WORDS for w in words_before]
    enc = tok(texts, padding="longest", truncation=True, max_length=MAX_TXT_LEN,
              return_attention_mask=True, return_tensors="pt")
    full_lens = [len(tok(t).input_ids) for t in texts]
    tok_truncated = [n > MAX_TXT_LEN for n in full_lens]
    assert pre_truncated == [False, False, True], pre_truncated
    assert tok_truncated == [False, False, True], full_lens
    input_ids = enc["input_ids"].clone()
    attention_mask = enc["attention_mask"].clone()
    assert input_ids.dtype == torch.int64 and attention_mask.dtype == torch.int64
    assert (input_ids[:, 0] == cls_id).all()
    input_ids[:, 0] = dec_id
    prompt_length = len(tok(PROMPT).input_ids) - 1
    labels = input_ids.masked_fill(input_ids == pad_id, -100)
    labels[:, :prompt_length] = -100
    assert torch.equal(attention_mask, (input_ids != pad_id).long())
    n_unk = int((input_ids == unk_id).sum())
    assert n_unk == 1, n_unk

    # ---- forward / backward (full model) ----
    captured = {}

    def emb_hook(_m, _i, out):
        out.retain_grad()
        captured["word_emb_out"] = out

    def transform_hook(_m, _i, out):
        captured["transform_out"] = out

    h1 = td.bert.embeddings.word_embeddings.register_forward_hook(emb_hook)
    h2 = td.cls.predictions.transform.register_forward_hook(transform_hook)
    with torch.enable_grad():
        out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
        logits = out.logits
        logits.retain_grad()
        loss = ce(logits, labels, LABEL_SMOOTHING)
        loss_ns = ce(logits.detach(), labels, 0.0)
        loss.backward()
    loss = loss.detach()
    h1.remove()
    h2.remove()
    assert logits.shape == (3, input_ids.shape[1], V) and logits.dtype == torch.float32
    vis = out.image_embeds.detach()
    grad_logits = logits.grad.detach().clone()

    # manual check of the smoothed loss formula
    lp = torch.log_softmax(logits.detach().double()[:, :-1], dim=-1)
    tgt = labels[:, 1:]
    keep = tgt != -100
    nll = -lp[keep].gather(-1, tgt[keep].unsqueeze(-1)).squeeze(-1)
    smooth = -lp[keep].mean(-1)
    manual = float(((1 - LABEL_SMOOTHING) * nll + LABEL_SMOOTHING * smooth).mean())
    assert abs(manual - float(loss)) < 1e-5 * max(1, abs(manual)), (manual, float(loss))
    n_targets = int(keep.sum())

    # HF's own labels path (config.label_smoothing = 0.0) == our unsmoothed loss
    with torch.no_grad():
        hf_loss = float(model(pixel_values=pixel_values, input_ids=input_ids,
                              attention_mask=attention_mask, labels=labels).loss)
    assert abs(hf_loss - float(loss_ns)) < 1e-6, (hf_loss, float(loss_ns))
    assert model.config.text_config.label_smoothing == 0.0

    grads = {n: params[n].grad.detach().clone() for n in GRAD_NAMES}
    for n, p in params.items():
        assert p.grad is not None, n

    # tied word embedding gradient = lookup part + LM-head part
    g_emb_out = captured["word_emb_out"].grad.detach()  # [B, L, H]
    lookup = torch.zeros_like(params[WORD_EMB])
    lookup.index_add_(0, input_ids.reshape(-1), g_emb_out.reshape(-1, g_emb_out.shape[-1]))
    lookup[padding_idx] = 0.0  # nn.Embedding(padding_idx=0) never updates that row
    lm_head = torch.einsum("blv,blh->vh", grad_logits, captured["transform_out"].detach())
    tied_err = float((lookup + lm_head - grads[WORD_EMB]).abs().max())
    assert tied_err < 1e-6, tied_err
    # pad positions get exactly zero gradient (masked keys, ignored labels)
    pad_pos = input_ids == pad_id
    assert float(g_emb_out[pad_pos].abs().max()) == 0.0
    assert float(grad_logits[:, -1].abs().max()) == 0.0
    bias_err = float((grad_logits.sum((0, 1)) - grads["text_decoder.cls.predictions.bias"]).abs().max())
    assert bias_err < 1e-6, bias_err

    # ---- clip + AdamW step ----
    before = {n: params[n].detach().clone() for n in STEP_NAMES}
    all_params = list(model.parameters())
    assert len(all_params) == len(params)
    manual_norm = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in all_params))
    grad_norm = float(torch.nn.utils.clip_grad_norm_(all_params, MAX_GRAD_NORM))
    assert abs(grad_norm - manual_norm) < 1e-5 * manual_norm, (grad_norm, manual_norm)
    clip_coef = min(1.0, MAX_GRAD_NORM / (grad_norm + 1e-6))
    clipped = {n: params[n].grad.detach().clone() for n in STEP_NAMES}
    for n in STEP_NAMES:
        assert torch.allclose(clipped[n], grads[n] * clip_coef, rtol=1e-6, atol=1e-12), n
    opt = torch.optim.AdamW(all_params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    opt.step()
    after = {n: params[n].detach().clone() for n in STEP_NAMES}
    step_check = {}
    for n in STEP_NAMES:
        p0, g = before[n].double(), clipped[n].double()
        b1, b2 = BETAS
        m, v = (1 - b1) * g, (1 - b2) * g * g
        p = p0 * (1 - LR * WEIGHT_DECAY)
        p = p - (LR / (1 - b1)) * m / (v.sqrt() / math.sqrt(1 - b2) + EPS)
        err = float((p - after[n].double()).abs().max())
        assert err < 1e-6, (n, err)
        step_check[n] = {"max_abs_diff_vs_float64_formula": err,
                         "min_abs_clipped_grad": float(g.abs().min()),
                         "max_abs_change": float((after[n].double() - p0).abs().max())}

    # ---- frozen vision ----
    model_f = load_model()
    for n, p in model_f.named_parameters():
        if n.startswith("vision_model."):
            p.requires_grad_(False)
    with torch.enable_grad():
        logits_f = model_f(pixel_values=pixel_values, input_ids=input_ids,
                           attention_mask=attention_mask).logits
        loss_f = ce(logits_f, labels, LABEL_SMOOTHING)
        loss_f.backward()
    loss_f = loss_f.detach()
    params_f = dict(model_f.named_parameters())
    vision_none = all(p.grad is None for n, p in params_f.items() if n.startswith("vision_model."))
    assert vision_none
    text_diff = max(float((params_f[n].grad - grads[n]).abs().max())
                    for n in GRAD_NAMES if not n.startswith("vision_model."))
    assert float(loss_f) == float(loss), (float(loss_f), float(loss))
    assert text_diff == 0.0, text_diff

    # ---- write ----
    tensors = {
        "pixel_values": pixel_values.contiguous(),
        "input_ids": input_ids.contiguous(),
        "attention_mask": attention_mask.contiguous(),
        "labels": labels.contiguous(),
        "logits": logits.detach().contiguous(),
        "grad_logits": grad_logits.contiguous(),
        "vision_last_hidden_state": vis.contiguous(),
        f"grad_tied_lookup.{WORD_EMB}": lookup.contiguous(),
        f"grad_tied_lm_head.{WORD_EMB}": lm_head.contiguous(),
    }
    for n in GRAD_NAMES:
        tensors[f"grad.{n}"] = grads[n].contiguous()
    for n in STEP_NAMES:
        tensors[f"after_step.{n}"] = after[n].contiguous()
    save_file(tensors, OUT_DIR / "expected.safetensors")

    expected = {
        "generated_by": "scripts/make_train_fixtures.py",
        "model_dir": "captioner-cli/tests/fixtures/tiny-a",
        "images": IMAGES,
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "recipe": RECIPE,
        "prompt": PROMPT,
        "prompt_length": prompt_length,
        "max_words": MAX_WORDS,
        "max_txt_len": MAX_TXT_LEN,
        "label_smoothing": LABEL_SMOOTHING,
        "captions_raw": CAPTIONS,
        "captions_pre": pre,
        "pre_caption_truncated": pre_truncated,
        "texts": texts,
        "tokenized_len_untruncated": full_lens,
        "tokenizer_truncated": tok_truncated,
        "tokens": [tok.convert_ids_to_tokens(r) for r in input_ids.tolist()],
        "input_ids": input_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "labels": labels.tolist(),
        "input_ids_dtype": "int64 (also attention_mask, labels)",
        "bos_token_id": dec_id,
        "cls_token_id": cls_id,
        "sep_token_id": sep_id,
        "pad_token_id": pad_id,
        "unk_token_id": unk_id,
        "vocab_size": V,
        "n_loss_targets": n_targets,
        "loss": float(loss),
        "loss_no_smoothing": float(loss_ns),
        "loss_hf_labels_path": hf_loss,
        "loss_float64_from_logits": manual,
        "grad_norm": grad_norm,
        "clip_coef": clip_coef,
        "optimizer": {"type": "torch.optim.AdamW", "lr": LR, "betas": list(BETAS), "eps": EPS,
                      "weight_decay": WEIGHT_DECAY, "weight_decay_on": "all parameters",
                      "amsgrad": False, "steps": 1, "max_grad_norm": MAX_GRAD_NORM},
        "step_check": step_check,
        "grad_names": GRAD_NAMES,
        "step_names": STEP_NAMES,
        "tied": {
            "lm_head_weight": "text_decoder.cls.predictions.decoder.weight is " + WORD_EMB,
            "lm_head_bias": "text_decoder.cls.predictions.decoder.bias is "
                            "text_decoder.cls.predictions.bias",
            "grad": f"grad.{WORD_EMB} = grad_tied_lookup + grad_tied_lm_head "
                    f"(max abs err {tied_err:.3g}); lookup row {padding_idx} (padding_idx) is 0",
            "padding_idx": padding_idx,
        },
        "frozen_vision": {
            "loss": float(loss_f),
            "vision_grads_none": vision_none,
            "text_grads_max_abs_diff_vs_full": text_diff,
        },
        "attention": "eager; self-attention mask = causal AND key padding, additive "
                     "torch.finfo(float32).min; cross-attention unmasked over the 17 image tokens",
    }
    with open(OUT_DIR / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    total = sum(p.stat().st_size for p in OUT_DIR.iterdir())
    assert total < MAX_BYTES, total
    print(f"== train fixture: {total} bytes in {OUT_DIR.relative_to(REPO_ROOT)}")
    print(f"   loss={float(loss):.8f} loss_no_smoothing={float(loss_ns):.8f} "
          f"grad_norm={grad_norm:.6f} targets={n_targets}")
    for row in expected["tokens"]:
        print("   " + " ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
