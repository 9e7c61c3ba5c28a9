"""Writes shard outputs with the captioner and records what Python's readers make of
them, so that the Rust tests can hold today's outputs to what those readers accepted
(no Python at test time).

    pip install webdataset==1.0.2 pyarrow==26.0.1
    cargo build --release -p captioner-cli
    python scripts/read_shard_outputs.py

Runs `captioner shards` on datasets/tests/fixtures/parquet/hf_image.parquet with the
tiny-a test model (greedy, as the tests run it) twice: as a tar, and as Parquet keeping
the input's `text` column. The outputs go to captioner-cli/tests/fixtures/shard-outputs/
with read.json: the samples webdataset yields from the tar (key, suffixes, the txt
text, the json's fields) and what pyarrow reads from the Parquet file (each column's
name and type as pyarrow prints it, the key-value metadata's keys, the rows).
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "captioner-cli/tests/fixtures/shard-outputs"
# Relative to ROOT, where the captioner runs, so the outputs name no machine's paths.
INPUT = "datasets/tests/fixtures/parquet/hf_image.parquet"
BIN = ROOT / "target/release/captioner"
MODEL = "captioner-cli/tests/fixtures/tiny-a"
# The tests' GREEDY arguments.
GREEDY = ["--beams", "1", "--max-new-tokens", "20", "--min-new-tokens", "0"]


def run(out: Path, *extra: str) -> None:
    cmd = [str(BIN), "shards", INPUT, "--out", str(out), "--model", MODEL, *GREEDY, *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run(tmp / "tar")
        run(tmp / "pq", "--format", "parquet", "--keep-columns", "text")
        shutil.copy(tmp / "tar/hf_image.tar", OUT / "hf_image.tar")
        shutil.copy(tmp / "pq/hf_image.parquet", OUT / "hf_image.parquet")

    samples = []
    for s in wds.WebDataset(str(OUT / "hf_image.tar"), shardshuffle=False):
        info = json.loads(s["json"])
        samples.append({
            "key": s["__key__"],
            "suffixes": sorted(k for k in s if not k.startswith("__")),
            "txt": s["txt"].decode() if "txt" in s else None,
            "json": {k: info.get(k) for k in ["key", "status", "caption", "score", "error"]},
            "json_fields": sorted(info),
        })
    table = pq.read_table(OUT / "hf_image.parquet")
    read = {
        "webdataset": samples,
        "pyarrow": {
            "schema": [[f.name, str(f.type)] for f in table.schema],
            "metadata": sorted(
                k.decode() for k in pq.ParquetFile(OUT / "hf_image.parquet").metadata.metadata
            ),
            "rows": table.to_pylist(),
        },
    }
    (OUT / "read.json").write_text(json.dumps(read, indent=1) + "\n")
    print(f"{len(samples)} samples, {table.num_rows} rows")


if __name__ == "__main__":
    main()
