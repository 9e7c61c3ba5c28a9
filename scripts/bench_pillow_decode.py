"""Times Pillow decoding the JPEGs of a folder as transformers' users load them
(open, load, exif_transpose, convert to RGB), on 2 threads, median of 7 passes, for a
side-by-side figure with `captioner bench --decode DIR --threads 2 --runs 7`.

    python scripts/bench_pillow_decode.py DIR
"""
import sys, time, glob, statistics
from concurrent.futures import ThreadPoolExecutor
from PIL import Image, ImageOps
files = sorted(glob.glob(sys.argv[1] + "/*.jpg"))
def load(p):
    im = Image.open(p); im.load(); im = ImageOps.exif_transpose(im); return im.convert("RGB").size
with ThreadPoolExecutor(2) as ex:
    list(ex.map(load, files))
    ts = []
    for _ in range(7):
        t = time.perf_counter(); list(ex.map(load, files)); ts.append(time.perf_counter() - t)
m = statistics.median(ts)
print(f"Pillow {Image.__version__}, 2 threads: {len(files)/m:.2f} img/s (median {m:.3f} s)")
