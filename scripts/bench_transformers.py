"""Images per second of transformers' BLIP at BLIP-base size, on the CPU, in float32.

This is the reference side of `captioner bench`: both build a randomly initialised
BLIP-base-sized model (ViT-B/16 at 384 pixels, BERT-base decoder with cross-attention,
30524-token vocabulary; nothing is downloaded, the model is built from a config) and
time the same four cases on random pixels:

    vision encoder, batch 8    the ViT alone
    greedy, batch 1            vision encoder + greedy decoding of one image
    greedy, batch 8            the same for a batch of 8
    3 beams, batch 8           vision encoder + beam search, 3 beams per image

Every generation writes exactly 20 new tokens per caption (min_new_tokens =
max_new_tokens = 20, so [SEP] cannot end a caption early and random weights cannot
change the amount of work). Each case runs once untimed, then --runs times; the median
is reported as images per second. Run both on the same idle machine with the same
thread count and divide, e.g.:

    python scripts/bench_transformers.py --threads 2 --json > transformers.json
    cargo run --release -p captioner-cli -- bench

Needs torch and transformers (scripts/requirements-fixtures.txt has tested versions).
With --train it times training steps instead, as `captioner bench --train` does: the
`tiny` preset at --batch and at 32 images, and BLIP-base with its vision encoder frozen
at --batch; each step is the forward pass with labels (BLIP's label-smoothed loss),
backward, clip_grad_norm_(1.0) and AdamW, on random pixels and 20-token captions.

    python scripts/bench_transformers.py --train --threads 2 --runs 5
    cargo run --release -p captioner-cli -- bench --train --threads 2 --runs 5

--precision int8 applies torch's one-line dynamic quantization
(`torch.ao.quantization.quantize_dynamic` on every nn.Linear, qint8) to the whole model,
what a transformers user does for int8 on the CPU; --precision bf16 casts the model and
the pixels to bfloat16. Compare with `captioner bench --precision f32|bf16|int8`.

--arch vit-gpt2 times the same four cases on transformers' VisionEncoderDecoderModel at
the size of nlpconnect/vit-gpt2-image-captioning (ViT-B/16 at 224 pixels, GPT-2 small
with cross-attention, 50257-token vocabulary), against `captioner bench --arch vit-gpt2`.

Use --tiny for a seconds-long check that the script runs (tiny shapes, numbers
meaningless). Nothing else may run meanwhile: on a busy machine multi-threaded kernels
slow down erratically.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import (
    BlipConfig,
    BlipForConditionalGeneration,
    GPT2Config,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
)

# BLIP-base as on the hub (Salesforce/blip-image-captioning-base).
BASE = {
    "vision": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=384,
        patch_size=16,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
    ),
    "text": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        vocab_size=30524,
        encoder_hidden_size=768,
        max_position_embeddings=512,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        bos_token_id=30522,
        sep_token_id=102,
        pad_token_id=0,
        eos_token_id=2,
    ),
}

# Tiny shapes to check that the script runs; the numbers mean nothing.
TINY = {
    "vision": dict(
        BASE["vision"],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=64,
    ),
    "text": dict(
        BASE["text"],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        encoder_hidden_size=32,
    ),
}


# The `tiny` preset of `captioner train` (captioner-train/src/fresh.rs) with the
# shipped shapes-tiny's 223-token vocabulary, as `captioner bench --train` builds it.
SHAPES_TINY = {
    "vision": dict(
        BASE["vision"],
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        image_size=96,
        patch_size=12,
    ),
    "text": dict(
        BASE["text"],
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=512,
        encoder_hidden_size=128,
        max_position_embeddings=64,
        vocab_size=223,
        bos_token_id=5,
        sep_token_id=3,
        eos_token_id=3,
    ),
}

# Training captions: [DEC], 3 prompt tokens (not in the loss), 15 caption tokens, [SEP].
TRAIN_TOKENS = 20
TRAIN_PROMPT = 4


def train_cases(args) -> list:
    """The optimizer steps `captioner bench --train` times: forward with labels (BLIP's
    label-smoothed loss), backward, clip_grad_norm_(1.0), AdamW (weight decay 0.05)."""
    cases = []
    for name, sizes, batch, freeze in [
        (f"train tiny, batch {args.batch}", SHAPES_TINY, args.batch, False),
        ("train tiny, batch 32", SHAPES_TINY, 32, False),
        (f"train base frozen ViT, b{args.batch}", TINY if args.tiny else BASE, args.batch, True),
    ]:
        model = build(sizes).train()
        if freeze:
            model.vision_model.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.05)
        size = sizes["vision"]["image_size"]
        text = sizes["text"]
        x = torch.randn(batch, 3, size, size, dtype=torch.float32)
        low = min(1000, text["vocab_size"] // 2)
        ids = torch.randint(low, low + 100, (batch, TRAIN_TOKENS))
        ids[:, 0] = text["bos_token_id"]
        ids[:, -1] = text["sep_token_id"]
        labels = ids.clone()
        labels[:, :TRAIN_PROMPT] = -100

        def step(model=model, params=params, opt=opt, x=x, ids=ids, labels=labels) -> None:
            loss = model(pixel_values=x, input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        cases.append((name, batch, step))
    return cases


# nlpconnect/vit-gpt2-image-captioning's shapes, as `captioner bench --arch vit-gpt2`
# builds them (GPT-2's defaults are GPT-2 small's).
VIT_GPT2 = {
    "vision": dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                   num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                   layer_norm_eps=1e-12),
    "text": dict(add_cross_attention=True, is_decoder=True),
}

VIT_GPT2_TINY = {
    "vision": dict(VIT_GPT2["vision"], image_size=64, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=64),
    "text": dict(VIT_GPT2["text"], n_embd=32, n_layer=2, n_head=4, vocab_size=300,
                 bos_token_id=299, eos_token_id=299),
}


def build_vit_gpt2(sizes: dict) -> VisionEncoderDecoderModel:
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(**sizes["vision"]), GPT2Config(**sizes["text"])
    )
    eos = config.decoder.eos_token_id
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
    return VisionEncoderDecoderModel(config=config).to(torch.float32).eval()


def build(sizes: dict) -> BlipForConditionalGeneration:
    config = BlipConfig(text_config=sizes["text"], vision_config=sizes["vision"])
    model = BlipForConditionalGeneration(config).to(torch.float32).eval()
    return model


def timed_runs(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the batched cases (default 8)")
    parser.add_argument("--tokens", type=int, default=20, help="new tokens per caption (default 20)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: a quick check that it runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8", "bf16"],
        default="fp32",
        help="fp32, torch dynamic int8 on every Linear, or bfloat16 (default fp32)",
    )
    parser.add_argument(
        "--arch",
        choices=["blip-base", "vit-gpt2"],
        default="blip-base",
        help="BLIP-base, or ViT-B/16 + GPT-2 small (VisionEncoderDecoderModel) (default blip-base)",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="time training steps instead (tiny preset; BLIP-base with a frozen vision encoder)",
    )
    args = parser.parse_args()
    if min(args.threads, args.runs, args.batch, args.tokens) < 1 or args.warmup < 0:
        parser.error("--threads, --runs, --batch and --tokens must be at least 1")
    if args.train and args.precision != "fp32":
        parser.error("training steps run in fp32")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.train:
        results = [run_case(name, batch, fn, args) for name, batch, fn in train_cases(args)]
        return report(results, args, "training steps")

    if args.arch == "vit-gpt2":
        sizes = VIT_GPT2_TINY if args.tiny else VIT_GPT2
        model = build_vit_gpt2(sizes)
        encoder = model.encoder
    else:
        sizes = TINY if args.tiny else BASE
        model = build(sizes)
        encoder = model.vision_model
    dtype = torch.float32
    if args.precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif args.precision == "bf16":
        model = model.to(torch.bfloat16)
        dtype = torch.bfloat16
    size = sizes["vision"]["image_size"]
    b, tokens = args.batch, args.tokens

    def pixels(batch: int) -> torch.Tensor:
        return torch.randn(batch, 3, size, size, dtype=torch.float32).to(dtype)

    def caption(x: torch.Tensor, beams: int) -> None:
        out = model.generate(
            pixel_values=x,
            num_beams=beams,
            do_sample=False,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
        )
        # [DEC] plus exactly `tokens` new ones, or the cases do different work.
        if out.shape != (x.shape[0], 1 + tokens):
            raise SystemExit(f"generate returned shape {tuple(out.shape)}, expected {(x.shape[0], 1 + tokens)}")

    cases = []
    with torch.inference_mode():
        x = pixels(b)
        cases.append((f"vision encoder, batch {b}", b, lambda: encoder(pixel_values=x)))
        for name, batch, beams in [
            ("greedy, batch 1", 1, 1),
            (f"greedy, batch {b}", b, 1),
            (f"3 beams, batch {b}", b, 3),
        ]:
            xs = pixels(batch)
            cases.append((name, batch, lambda xs=xs, beams=beams: caption(xs, beams)))

        results = [run_case(name, batch, fn, args) for name, batch, fn in cases]
    return report(results, args, ("tiny " if args.tiny else "") + args.arch)


def run_case(name: str, batch: int, fn, args) -> dict:
    seconds = timed_runs(fn, args.runs, args.warmup)
    med = statistics.median(seconds)
    print(f"  {name:<30} {batch / med:9.2f} images/s  (median {med * 1000:.1f} ms)", file=sys.stderr)
    return {
        "name": name,
        "batch": batch,
        "seconds": seconds,
        "median_seconds": med,
        "images_per_second": batch / med,
    }


def report(results: list, args, model: str) -> int:
    tokens = args.tokens
    report = {
        "implementation": "transformers",
        "model": model,
        "dtype": getattr(args, "precision", "fp32"),
        "device": "cpu",
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "new_tokens": tokens,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cases": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"transformers {transformers.__version__}, torch {torch.__version__}, "
            f"{report['model']}, {report['dtype']}, CPU, {args.threads} threads, median of {args.runs}"
        )
        print("| case | batch | images/s | median ms |")
        print("|---|---:|---:|---:|")
        for r in results:
            print(f"| {r['name']} | {r['batch']} | {r['images_per_second']:.2f} | {r['median_seconds'] * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
