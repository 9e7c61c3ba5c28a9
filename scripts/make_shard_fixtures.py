"""Writes the shard fixtures, each with what a reference reader makes of it, for the
Rust tests to compare with (no Python at test time).

    pip install webdataset==1.0.2 pyarrow==26.0.1
    python scripts/make_shard_fixtures.py

Outputs, in datasets/tests/fixtures/webdataset/: edge.tar, and edge.json holding the
samples the webdataset library yields (key, and each suffix with its bytes as text, in
order). In datasets/tests/fixtures/parquet/, written by pyarrow: hf_image.parquet (a
Hugging Face datasets `Image` column, a struct of bytes and path, beside a text column;
row groups of 3; one null image) and img2dataset.parquet (`key`, a binary `jpg` column
and `caption`), with rows.json: each file's rows as pyarrow reads them (key or null,
image path or null, image bytes' SHA-256 or null).
"""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "datasets/tests/fixtures/webdataset"
PARQUET = ROOT / "datasets/tests/fixtures/parquet"
IMAGES = ROOT / "captioner-cli/tests/fixtures/images"

MEMBERS = [
    ("__meta__", b"metadata: skipped"),
    ("part/000.JPG", b"upper-case suffix"),
    ("part/000.txt", b"a caption"),
    ("part/000.seg.png", b"two dots: suffix seg.png"),
    ("part/001.jpg", b"next key"),
    ("notes", b"no dot: skipped"),
    ("part/000.json", b"same key, not adjacent: a sample of its own"),
    ("a.b/c.jpg", b"dot in a folder name"),
    ("dir/.hidden.jpg", b"hidden file: key dir/"),
    ("part/002.json", b"no image"),
    ("x/y/z/003.webp", b"deep folders"),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tar_path = OUT / "edge.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as t:
        d = tarfile.TarInfo("part")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    samples = []
    for s in wds.WebDataset(str(tar_path), shardshuffle=False):
        files = [[k, v.decode()] for k, v in s.items() if not k.startswith("__")]
        samples.append({"key": s["__key__"], "files": files})
    (OUT / "edge.json").write_text(json.dumps(samples, indent=1) + "\n")
    print(f"{len(samples)} samples")
    parquet()


def sha(b):
    return None if b is None else hashlib.sha256(b).hexdigest()


def parquet() -> None:
    PARQUET.mkdir(parents=True, exist_ok=True)
    names = ["odd_rgb.png", "photo_lossy.webp", "gray.png", None, "photo_420_baseline.jpg"]
    images = [
        None if n is None else {"bytes": (IMAGES / n).read_bytes(), "path": n} for n in names
    ]
    hf = pa.table(
        {
            "image": pa.array(
                images,
                type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
            ),
            "text": [f"caption {i}" for i in range(len(names))],
        }
    )
    pq.write_table(hf, PARQUET / "hf_image.parquet", row_group_size=3, compression="snappy")
    i2d = pa.table(
        {
            "key": ["000010000", "000010001", "000010002"],
            "jpg": [(IMAGES / n).read_bytes() for n in ["photo_444_q95.jpg", "photo_exif6.jpg", "photo_422_progressive.jpg"]],
            "caption": ["a", "b", "c"],
        }
    )
    pq.write_table(i2d, PARQUET / "img2dataset.parquet", compression="zstd")
    rows = {}
    for f in ["hf_image.parquet", "img2dataset.parquet"]:
        t = pq.read_table(PARQUET / f).to_pylist()
        rows[f] = [
            {
                "key": r.get("key"),
                "path": (r["image"] or {}).get("path") if "image" in r else None,
                "sha256": sha((r["image"] or {}).get("bytes")) if "image" in r else sha(r["jpg"]),
            }
            for r in t
        ]
    (PARQUET / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
