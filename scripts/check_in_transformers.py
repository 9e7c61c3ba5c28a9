"""Load a checkpoint that captioner wrote into transformers, and record what transformers
computes with it, for the Rust tests to compare with (our checkpoints must be real
Hugging Face BLIP or VisionEncoderDecoder checkpoints).

    python scripts/check_in_transformers.py weights/shapes-tiny datasets/sample/images/test/000001.png \
        captioner-cli/tests/fixtures/shapes-tiny-hf

It loads CHECKPOINT with BlipForConditionalGeneration.from_pretrained and
BlipProcessor.from_pretrained (PIL backend), then for IMAGE writes to OUT:

* expected.safetensors: pixel_values, input_ids (int64) and the teacher-forced logits
  of "a picture of " + CAPTION with [DEC] first (BLIP's training recipe);
* expected.json: the greedy caption (max_length 20, prompt "a picture of") as token
  ids and text, and the versions used.

A VisionEncoderDecoder checkpoint (config.json's model_type "vision-encoder-decoder") is
loaded with VisionEncoderDecoderModel, AutoImageProcessor (PIL backend) and AutoTokenizer
instead, and recorded as its own loss reads a caption: labels are the tokenizer's ids of
CAPTION with its special tokens, eos appended where they do not end with it, and
input_ids (the decoder's input) are those shifted right after decoder_start_token_id;
the greedy caption is generate()'s default (20 new tokens, no prompt).

Needs the packages of scripts/requirements-fixtures.txt; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    BlipForConditionalGeneration,
    BlipProcessor,
    VisionEncoderDecoderModel,
)

CAPTION = "a red circle to the left of a blue square"
PROMPT = "a picture of "


def vision_encoder_decoder(ckpt: Path, image_path: Path):
    """pixel_values, decoder input_ids, logits, the greedy caption's ids and text, and
    the prompt (none) of a VisionEncoderDecoder checkpoint."""
    model = VisionEncoderDecoderModel.from_pretrained(ckpt).eval()
    image_processor = AutoImageProcessor.from_pretrained(ckpt, backend="pil")
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    image = Image.open(image_path).convert("RGB")
    pixel_values = image_processor(images=image, return_tensors="pt").pixel_values
    labels = tokenizer(CAPTION).input_ids
    eos = model.config.eos_token_id
    if labels[-1] != eos:
        labels.append(eos)
    input_ids = torch.tensor([[model.config.decoder_start_token_id] + labels[:-1]])
    with torch.no_grad():
        logits = model(pixel_values=pixel_values, decoder_input_ids=input_ids).logits
        generated = model.generate(pixel_values=pixel_values, num_beams=1)
    text = tokenizer.decode(generated[0], skip_special_tokens=True)
    return pixel_values, input_ids, logits, generated, text, ""


def main() -> int:
    ckpt, image_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model_type = json.loads((ckpt / "config.json").read_text()).get("model_type")
    if model_type == "vision-encoder-decoder":
        pixel_values, input_ids, logits, generated, text, prompt = vision_encoder_decoder(
            ckpt, image_path
        )
        record(out, ckpt, image_path, pixel_values, input_ids, logits, generated, text, prompt)
        return 0
    model = BlipForConditionalGeneration.from_pretrained(ckpt).eval()
    processor = BlipProcessor.from_pretrained(ckpt, backend="pil")
    image = Image.open(image_path).convert("RGB")
    pixel_values = processor(images=image, return_tensors="pt").pixel_values
    enc = processor.tokenizer(PROMPT + CAPTION, return_tensors="pt")
    input_ids = enc.input_ids.clone()
    input_ids[:, 0] = model.config.text_config.bos_token_id
    with torch.no_grad():
        logits = model(pixel_values=pixel_values, input_ids=input_ids).logits
        # BLIP's generate puts [DEC] first and drops the prompt's final [SEP] itself.
        prompt_ids = processor.tokenizer(PROMPT.strip(), return_tensors="pt").input_ids
        generated = model.generate(pixel_values=pixel_values, input_ids=prompt_ids, max_length=20, num_beams=1)
    text = processor.tokenizer.decode(generated[0], skip_special_tokens=True)
    record(out, ckpt, image_path, pixel_values, input_ids, logits, generated, text, PROMPT)
    return 0


def record(out, ckpt, image_path, pixel_values, input_ids, logits, generated, text, prompt) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(
        {"pixel_values": pixel_values.contiguous(), "input_ids": input_ids.contiguous(), "logits": logits.contiguous()},
        out / "expected.safetensors",
    )
    meta = {
        "checkpoint": str(ckpt),
        "image": str(image_path),
        "caption": CAPTION,
        "prompt": prompt,
        "generated_ids": generated[0].tolist(),
        "generated_text": text,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    (out / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("generated_ids", "generated_text")}))


if __name__ == "__main__":
    sys.exit(main())
