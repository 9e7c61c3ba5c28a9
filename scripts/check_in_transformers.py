"""Load a checkpoint that captioner wrote into transformers, and record what transformers
computes with it, for the Rust tests to compare with (our checkpoints must be real
Hugging Face BLIP checkpoints).

    python scripts/check_in_transformers.py weights/shapes-tiny datasets/sample/images/test/000001.png \
        captioner-cli/tests/fixtures/shapes-tiny-hf

It loads CHECKPOINT with BlipForConditionalGeneration.from_pretrained and
BlipProcessor.from_pretrained (PIL backend), then for IMAGE writes to OUT:

* expected.safetensors: pixel_values, input_ids (int64) and the teacher-forced logits
  of "a picture of " + CAPTION with [DEC] first (BLIP's training recipe);
* expected.json: the greedy caption (max_length 20, prompt "a picture of") as token
  ids and text, and the versions used.

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
from transformers import BlipForConditionalGeneration, BlipProcessor

CAPTION = "a red circle to the left of a blue square"
PROMPT = "a picture of "


def main() -> int:
    ckpt, image_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(1)
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
        "prompt": PROMPT,
        "generated_ids": generated[0].tolist(),
        "generated_text": processor.tokenizer.decode(generated[0], skip_special_tokens=True),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    (out / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("generated_ids", "generated_text")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
