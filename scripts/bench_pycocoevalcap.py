"""Time pycocoevalcap 1.2 on the synthetic captions `captioner bench --metrics` times.

    cargo run --release -p captioner-cli -- bench --metrics --save-data /tmp/score-bench
    python scripts/bench_pycocoevalcap.py /tmp/score-bench

Needs `pip install pycocoevalcap==1.2` and Java. Times what `captioner bench --metrics`
times: PTB tokenization of every caption, then Bleu(4), Rouge() and Cider() (METEOR
and SPICE left out), median of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the folder `captioner bench --metrics --save-data` wrote")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    refs = json.loads((args.data / "refs.json").read_text())
    results = json.loads((args.data / "results.json").read_text())
    gts: dict = {}
    for a in refs["annotations"]:
        gts.setdefault(a["image_id"], []).append({"caption": a["caption"]})
    res = {r["image_id"]: [{"caption": r["caption"]}] for r in results}

    def once() -> dict:
        tok = PTBTokenizer()
        g, r = tok.tokenize(gts), tok.tokenize(res)
        t = time.perf_counter()
        out = {"Bleu_4": Bleu(4).compute_score(g, r, verbose=0)[0][3]}
        out["ROUGE_L"] = Rouge().compute_score(g, r)[0]
        out["CIDEr"] = Cider().compute_score(g, r)[0]
        out["metrics_s"] = time.perf_counter() - t
        return out

    seconds, last = [], {}
    for _ in range(args.runs):
        t = time.perf_counter()
        last = once()
        seconds.append(time.perf_counter() - t)
    print(f"pycocoevalcap, {len(res)} images x {len(refs['annotations']) // len(res)} refs: "
          f"{statistics.median(seconds):.3f} s (median of {args.runs}; "
          f"metrics without tokenization {last['metrics_s']:.3f} s)")
    print({k: v for k, v in last.items() if k != "metrics_s"})


if __name__ == "__main__":
    main()
