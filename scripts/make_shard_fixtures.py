"""Writes a WebDataset tar with the grouping edge cases and records how the webdataset
library groups it, for datasets/tests/webdataset.rs to compare with (no Python at test
time).

    pip install webdataset==1.0.2
    python scripts/make_shard_fixtures.py

Outputs, in datasets/tests/fixtures/webdataset/: edge.tar, and edge.json holding the
samples webdataset yields (key, and each suffix with its bytes as text, in order).
"""

import io
import json
import tarfile
from pathlib import Path

import webdataset as wds

OUT = Path(__file__).resolve().parent.parent / "datasets/tests/fixtures/webdataset"

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


if __name__ == "__main__":
    main()
