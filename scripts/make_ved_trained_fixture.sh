#!/usr/bin/env bash
# A VisionEncoderDecoder checkpoint fine-tuned by `captioner train`, and what
# transformers computes with it, for captioner-cli/tests/parity.rs:
#
#   captioner-cli/tests/fixtures/ved-trained/     the checkpoint (ViT + GPT-2, from the
#                                                 ved/vit-gpt2 fixture, 4 steps on 16
#                                                 synthetic images), without optimizer state
#   captioner-cli/tests/fixtures/ved-trained-hf/  transformers' logits and greedy caption
#                                                 (scripts/check_in_transformers.py)
#
# Run from the repository root after scripts/make_ved_fixtures.py, with the Python of
# scripts/requirements-fixtures.txt as PYTHON (default python3). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
cargo build --release -p captioner-cli --locked
bin=target/release/captioner
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" dataset synth --out "$work/data" --train 16 --val 4 --test 0 --seed 1 --size 48
"$bin" train --init captioner-cli/tests/fixtures/ved/vit-gpt2 --train "$work/data/train.json" \
    --images "$work/data" --val "$work/data/val.json" --out "$work/run" --steps 4 --batch 4 \
    --lr 1e-3 --save-every 4 --threads 1 --quiet
out=captioner-cli/tests/fixtures/ved-trained
rm -rf "$out"
mkdir -p "$out"
for f in config.json generation_config.json model.safetensors preprocessor_config.json \
    tokenizer.json tokenizer_config.json; do
    cp "$work/run/checkpoint-000004/$f" "$out/"
done
"$python" scripts/check_in_transformers.py "$out" datasets/sample/images/test/000001.png \
    captioner-cli/tests/fixtures/ved-trained-hf
