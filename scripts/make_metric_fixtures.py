"""Generate the caption-metric fixtures used by the Rust tests.

What it makes (everything under ``caption-metrics/tests/fixtures/``; that
folder, and only that folder, is deleted and recreated):

* ``tokenizer.json``: ``{"tool": {...versions...}, "pairs": [{"raw", "tokenized",
  "kind"}, ...], "context_pairs": [...]}``. About 2,000 caption-like strings
  written by this script (a scene-caption grammar with injected contractions,
  quotes, dashes, brackets, ellipses, numbers, abbreviations, symbols, unicode,
  odd whitespace, empty and punctuation-only strings), tokenized by
  pycocoevalcap's own ``PTBTokenizer`` (Stanford CoreNLP 3.4.1 PTBTokenizer run
  through Java, then pycocoevalcap's punctuation removal) as one batch.
  Characters that make Java see extra lines (``\\r``, U+000B, U+000C, U+0085,
  U+2028, U+2029) are kept out of the batch; the number of lines Java prints is
  checked, the batch is re-tokenized in reverse order, a sample with its next
  lines and a sample one string at a time, to prove the alignment. PTBTokenizer
  can change a caption's last token depending on the NEXT line of the batch
  ("... letter B." followed by a line starting "A ..."): ``pairs`` holds only
  strings that are not affected (so each can be checked alone), while
  ``context_pairs`` is a batch built to show the effect.
* Score sets: for each set NAME, ``NAME.refs.json`` (COCO caption annotation
  file) and ``NAME.results.json`` (COCO results file), plus one entry NAME in
  ``expected.json``: ``corpus`` (Bleu_1..4, ROUGE_L, CIDEr), ``bleu_stats``
  (testlen, reflen, guess[4], correct[4] summed over the evaluated images),
  ``per_image`` (evalImgs, in pycocoevalcap's image order), ``tokenized``
  ({image_id: {"refs", "cand"}}) and, for some sets, ``sacrebleu``. Scores are
  computed the way ``COCOEvalCap.evaluate`` does (``COCO(refs)``,
  ``loadRes(results)``, ``params['image_id'] = cocoRes.getImgIds()``, PTBTokenizer
  on gts then res, then ``Bleu(4)``, ``Rouge()``, ``Cider()``), leaving out
  METEOR and SPICE.

  - ``main``: 280 images, 1-7 references each (mostly 5), several kinds of
    candidates (``candidate_kinds`` in expected.json).
  - one set per case of the edge-case list (one edge image + 20 background
    images), re-created with this script's own captions, plus ``sanitized``
    (``\\r``, U+2028, U+2029, U+000B, U+000C inside captions; the files keep
    them, expected.json holds the scores after replacing them by spaces),
    ``reference_image_without_result`` and ``next_line_context`` (captions
    whose last token depends on the next caption of the tokenizer batch).
    ``two_candidates_same_image`` records the AssertionError pycocoevalcap
    raises instead of scores.
  - ``single``: one image (CIDEr is 0 for any one-image evaluation).
  - ``main.karpathy.json``: the ``main`` references as a Karpathy-style split
    file; ``expected.json["main_karpathy_test"]`` scores its ``test`` split with
    the ``main`` results restricted to those images.
* ``sacrebleu`` blocks (``main`` and a few edge sets): ``sacrebleu.corpus_bleu``
  with default settings on the raw captions, and ``sacrebleu_tokenizer.json``:
  raw -> ``Tokenizer13a()`` pairs.

All captions are written by this script (no COCO data). Everything is
deterministic (fixed seeds; two runs give byte-identical files); float values are
written with ``json`` (shortest round-trip repr, so exact).

How to run (from the repository root; needs Java on PATH for the PTBTokenizer,
no network access at run time):

    python -m venv .venv-fixtures
    . .venv-fixtures/bin/activate
    pip install -r scripts/requirements-fixtures.txt
    python scripts/make_metric_fixtures.py
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from importlib.metadata import version as pkg_version
from pathlib import Path

import sacrebleu
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.eval import COCOEvalCap
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer as ptb_module
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer
from pycocotools.coco import COCO
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "caption-metrics" / "tests" / "fixtures"

SEED_TOKENIZER = 20250611
SEED_MAIN = 20250612
SEED_EDGE = 20250613
SEED_SINGLE = 20250614
SEED_SACRE_TOK = 20250615

# Characters that make Java's PTBTokenizer (-preserveLines) start a new line: a
# caption holding one shifts every later caption of the batch. Kept out of the
# tokenizer batch; the ``sanitized`` set replaces them by spaces.
LINE_BREAKERS = ["\r", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"]
SANITIZE = ["\r", "\u2028", "\u2029", "\x0b", "\x0c"]

METRICS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]


# ---------------------------------------------------------------------------
# Scene-caption grammar
# ---------------------------------------------------------------------------

HUMANS = [
    [("man", "men"), ("guy", "guys"), ("person", "people"), ("gentleman", "gentlemen")],
    [("woman", "women"), ("lady", "ladies"), ("young woman", "young women")],
    [("boy", "boys"), ("young boy", "young boys"), ("kid", "kids"), ("little boy", "little boys")],
    [("girl", "girls"), ("little girl", "little girls"), ("child", "children")],
    [("skateboarder", "skateboarders"), ("skater", "skaters")],
    [("tennis player", "tennis players"), ("player", "players")],
    [("chef", "chefs"), ("cook", "cooks")],
    [("police officer", "police officers"), ("cop", "cops")],
]
ANIMALS = [
    [("dog", "dogs"), ("puppy", "puppies"), ("pup", "pups")],
    [("cat", "cats"), ("kitten", "kittens"), ("kitty", "kitties")],
    [("giraffe", "giraffes")],
    [("elephant", "elephants")],
    [("zebra", "zebras")],
    [("horse", "horses"), ("pony", "ponies")],
    [("bird", "birds"), ("seagull", "seagulls")],
    [("bear", "bears"), ("brown bear", "brown bears")],
    [("cow", "cows"), ("cattle", "cattle")],
    [("sheep", "sheep"), ("lamb", "lambs")],
]
HUMAN_ACTIONS = [
    ["riding a horse", "on a horse", "riding on a horse", "sitting on a {color} horse"],
    ["riding a {color} bike", "on a {color} bicycle", "riding a bicycle", "pedaling a {color} bike"],
    ["holding an umbrella", "with a {color} umbrella", "carrying an umbrella", "under an umbrella"],
    ["eating a slice of pizza", "eating pizza", "biting into a piece of pizza", "having a pizza"],
    ["throwing a frisbee", "playing frisbee", "catching a {color} frisbee", "tossing a frisbee"],
    ["flying a kite", "flying a {color} kite", "holding a kite", "with a kite"],
    ["sitting on a bench", "resting on a bench", "seated on a wooden bench", "sitting on a {color} bench"],
    ["standing next to a {color} car", "standing by a car", "next to a parked {color} car", "leaning on a car"],
    ["using a laptop", "looking at a laptop", "typing on a laptop computer", "working on a laptop"],
    ["talking on a cell phone", "on the phone", "using a cellphone", "looking at a phone"],
    ["walking down the street", "walking along the road", "strolling down a sidewalk", "crossing the street"],
    ["riding a wave", "surfing a wave", "on a surfboard", "riding a {color} surfboard"],
    ["skiing down a hill", "skiing down a snowy slope", "on skis", "skiing"],
    ["swinging a tennis racket", "playing tennis", "hitting a tennis ball", "holding a racket"],
    ["riding a skateboard", "doing a trick on a skateboard", "on a skateboard", "skateboarding"],
    ["drinking a cup of coffee", "holding a cup of coffee", "sipping coffee", "drinking coffee"],
    ["reading a book", "looking at a book", "reading a newspaper", "holding a {color} book"],
    ["cutting a cake", "slicing a birthday cake", "cutting into a cake", "standing over a cake"],
    ["cooking in a pan", "preparing food", "making dinner", "stirring a pot"],
    ["waiting for a train", "waiting for the bus", "standing at a bus stop", "looking at a train"],
]
ANIMAL_ACTIONS = [
    ["grazing", "eating grass", "grazing on grass", "feeding on grass"],
    ["standing", "standing still", "standing around", "standing together"],
    ["laying down", "lying down", "resting", "sleeping"],
    ["playing with a {color} ball", "chasing a ball", "running after a ball", "holding a ball"],
    ["drinking water", "drinking from a pond", "getting a drink", "drinking"],
    ["walking", "walking around", "walking slowly", "roaming"],
    ["looking at the camera", "staring at the camera", "looking around", "watching something"],
    ["sitting on a {color} couch", "sitting on a sofa", "laying on a couch", "curled up on a couch"],
]
PLACES = [
    ["on the beach", "on a sandy beach", "near the ocean", "by the shore"],
    ["in a kitchen", "inside a kitchen", "in a small kitchen", "in a {color} kitchen"],
    ["in a park", "at the park", "in a grassy park", "in a city park"],
    ["on a city street", "in the city", "on a busy street", "downtown"],
    ["in a living room", "in a room", "inside a house", "in a {color} room"],
    ["in the snow", "on a snowy mountain", "on a snow covered hill", "in the snowy woods"],
    ["next to a building", "in front of a building", "near a brick building", "by a {color} building"],
    ["in a field", "on a grassy field", "in a green field", "in an open field"],
    ["at the zoo", "in a zoo enclosure", "in a pen", "behind a fence"],
    ["on a tennis court", "at a tennis court", "on a clay court", "on the court"],
    ["at a train station", "on a platform", "near the tracks", "at the station"],
    ["in the water", "in the ocean", "in a lake", "in the river"],
    ["on a dirt road", "on a country road", "along a path", "on a trail"],
    ["at night", "in the dark", "under the street lights", "late at night"],
]
COLORS = ["red", "blue", "white", "black", "green", "yellow", "brown", "orange", "gray", "pink"]
ADJECTIVES = ["young", "old", "tall", "smiling", "happy", "little", "large", "small"]
EXTRAS = ["a {color} car", "a tall tree", "some people", "a large building", "a fence",
          "mountains", "a {color} truck", "a crowd", "a few trees", "the ocean"]


class Scene:
    def __init__(self, rng: random.Random):
        self.human = rng.random() < 0.65
        subjects = HUMANS if self.human else ANIMALS
        actions = HUMAN_ACTIONS if self.human else ANIMAL_ACTIONS
        self.subject = rng.randrange(len(subjects))
        self.action = rng.randrange(len(actions))
        self.place = rng.randrange(len(PLACES))
        self.color = rng.choice(COLORS)
        r = rng.random()
        self.count = 1 if r < 0.7 else (2 if r < 0.85 else (3 if r < 0.93 else 9))

    def variant(self, rng: random.Random, what: str) -> "Scene":
        other = copy.copy(self)
        if what == "action":
            n = len(HUMAN_ACTIONS if self.human else ANIMAL_ACTIONS)
            other.action = (self.action + 1 + rng.randrange(n - 1)) % n
        elif what == "place":
            other.place = (self.place + 1 + rng.randrange(len(PLACES) - 1)) % len(PLACES)
        elif what == "subject":
            n = len(HUMANS if self.human else ANIMALS)
            other.subject = (self.subject + 1 + rng.randrange(n - 1)) % n
        return other


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(scene: Scene, rng: random.Random) -> str:
    subjects = HUMANS if scene.human else ANIMALS
    sing, plur = rng.choice(subjects[scene.subject])
    if scene.count == 1:
        words = sing
        if rng.random() < 0.3:
            words = rng.choice(ADJECTIVES + [scene.color]) + " " + words
        det = rng.choice([article(words)] * 5 + ["the", "one"])
        return det + " " + words
    if scene.count == 2:
        det = rng.choice(["two", "two", "a couple of", "a pair of", "2"])
    elif scene.count == 3:
        det = rng.choice(["three", "a few", "several", "3"])
    else:
        det = rng.choice(["a group of", "a bunch of", "some", "many", "a herd of" if not scene.human else "a crowd of"])
    return det + " " + plur


def action_phrase(scene: Scene, rng: random.Random) -> str:
    actions = HUMAN_ACTIONS if scene.human else ANIMAL_ACTIONS
    return rng.choice(actions[scene.action]).format(color=rng.choice([scene.color] + COLORS))


def place_phrase(scene: Scene, rng: random.Random) -> str:
    return rng.choice(PLACES[scene.place]).format(color=rng.choice([scene.color] + COLORS))


def realize(scene: Scene, rng: random.Random) -> str:
    """A lower-case caption for the scene (no final period)."""
    np_ = noun_phrase(scene, rng)
    act = action_phrase(scene, rng)
    place = place_phrase(scene, rng)
    be = "is" if scene.count == 1 else "are"
    t = rng.randrange(11)
    if t <= 2:
        s = f"{np_} {act} {place}"
    elif t == 3:
        s = f"{np_} {act}"
    elif t == 4:
        s = f"{np_} {be} {act} {place}"
    elif t == 5:
        s = f"{place}, {np_} {be} {act}"
    elif t == 6:
        s = f"there {be} {np_} {act} {place}"
    elif t == 7:
        s = f"{np_} that {be} {act} {place}"
    elif t == 8:
        s = f"{rng.choice(['a photo of', 'an image of', 'a close up of', 'a picture of'])} {np_} {act} {place}"
    elif t == 9:
        s = f"{np_} {act} {place} with {rng.choice(EXTRAS).format(color=rng.choice(COLORS))} in the background"
    else:
        s = f"{np_} {act} {place} on a {rng.choice(['sunny', 'cloudy', 'rainy', 'cold', 'warm'])} day"
    return s


def realize_short(scene: Scene, rng: random.Random) -> str:
    """A shorter caption (3-8 words) for the tokenizer strings and the edge-set background."""
    np_ = noun_phrase(scene, rng)
    t = rng.randrange(3)
    if t == 0:
        return f"{np_} {action_phrase(scene, rng)}"
    if t == 1:
        return f"{np_} {place_phrase(scene, rng)}"
    return f"{np_} {action_phrase(scene, rng).split(' ')[0]} {place_phrase(scene, rng)}"


def style(s: str, rng: random.Random) -> str:
    """COCO-like surface form: capitals, final period, occasional trailing space."""
    r = rng.random()
    if r < 0.75:
        s = s[0].upper() + s[1:]
    elif r < 0.78:
        s = s.title()
    if rng.random() < 0.6:
        s += "."
    if rng.random() < 0.08:
        s += " "
    if rng.random() < 0.02:
        s = s.replace(" ", "  ", 1)
    return s


def make_refs(scene: Scene, rng: random.Random, n: int) -> list[str]:
    refs: list[str] = []
    tries = 0
    while len(refs) < n:
        s = style(realize(scene, rng) if rng.random() < 0.5 else realize_short(scene, rng), rng)
        tries += 1
        if s not in refs or tries > 50:
            refs.append(s)
    return refs


def long_caption(scene: Scene, rng: random.Random, min_words: int = 30) -> str:
    parts = [realize(scene, rng)]
    while sum(len(p.split()) for p in parts) < min_words:
        other = Scene(rng)
        parts.append(rng.choice(["while", "and", "next to", "as", "and behind them"]) + " " + realize(other, rng))
    return style(", ".join(parts), rng)


# ---------------------------------------------------------------------------
# PTBTokenizer helpers
# ---------------------------------------------------------------------------

JAVA_STDERR: list[str] = []


@contextlib.contextmanager
def capture_java_stderr():
    """Send fd 2 (where Java writes its progress and "Untokenizable" warnings) to a
    temporary file while pycocoevalcap runs Java."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tf:
        os.dup2(tf.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tf.seek(0)
            JAVA_STDERR.append(tf.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def java_lines(captions: list[str]) -> list[str]:
    """Run the exact Java command of PTBTokenizer.tokenize on the exact text it
    writes, and return Java's stdout split on '\\n'."""
    jar_dir = os.path.dirname(os.path.abspath(ptb_module.__file__))
    sentences = "\n".join(c.replace("\n", " ") for c in captions)
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=jar_dir)
    tmp.write(sentences.encode())
    tmp.close()
    cmd = ["java", "-cp", ptb_module.STANFORD_CORENLP_3_4_1_JAR,
           "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
           os.path.basename(tmp.name)]
    try:
        out = subprocess.run(cmd, cwd=jar_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
    finally:
        os.remove(tmp.name)
    return out.decode().split("\n")


def remove_punct(line: str) -> str:
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def checked_tokenize(captions_for_image: dict) -> dict:
    """pycocoevalcap's PTBTokenizer().tokenize, plus a check that Java printed
    exactly one line per caption (a caption holding a line breaker would shift
    every later caption silently)."""
    flat = [c["caption"] for v in captions_for_image.values() for c in v]
    lines = java_lines(flat)
    assert len(lines) == len(flat), f"Java printed {len(lines)} lines for {len(flat)} captions"
    with capture_java_stderr():
        out = PTBTokenizer().tokenize(captions_for_image)
    got = [t for v in out.values() for t in v]
    assert got == [remove_punct(l) for l in lines], "PTBTokenizer output differs from the line-count run"
    return out


def tokenize_list(captions: list[str]) -> list[str]:
    out = checked_tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [out[i][0] for i in range(len(captions))]


def tokenize_neutral(captions: list[str]) -> list[str]:
    """Each caption tokenized with a neutral next line ("zzz"), i.e. as if nothing
    after it could change its last token."""
    inter = [x for c in captions for x in (c, "zzz")]
    lines = java_lines(inter)
    assert len(lines) == len(inter)
    return [remove_punct(lines[2 * i]) for i in range(len(captions))]


# ---------------------------------------------------------------------------
# 1. tokenizer.json
# ---------------------------------------------------------------------------

CONTRACTIONS = ["don't", "can't", "won't", "it's", "dog's", "dogs'", "I'm", "they're", "gonna", "cannot",
                "'tis", "y'all", "ma'am", "o'clock", "rock 'n' roll", "'90s", "isn't", "we've", "she'll",
                "he'd", "you're", "let's", "wanna", "gotta", "doesn't", "man's", "children's", "James'",
                "ain't", "shouldn't've", "'em", "'cause", "don\u2019t", "it\u2019s", "dog\u2019s", "can\u2019t",
                "DON'T", "It's", "Cannot", "GONNA", "there's", "what's", "who's", "c'mon", "ol'", "'twas",
                "won\u2019t", "they\u2019re", "I\u2019m", "rock\u2019n\u2019roll", "80's", "1990's",
                "'s", "n't", "o'neil", "McDonald's", "d'oh", "Ma'am", "O'Clock", "workin'", "nothin'"]
QUOTE_PAIRS = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("``", "''"),
               ('"', ""), ("", '"'), ("'", ""), ("", "'"), ("\u201e", "\u201c"), ("\u00ab", "\u00bb"),
               ("\u201d", "\u201d"), ("`", "'"), ("''", "''"), ("\u2039", "\u203a")]
DASH_TOKENS = ["-", "--", "\u2014", "\u2013", "---", "\u2012", "\u2015", "\u2212", "- -", "\u2010", "\u2011"]
HYPHEN_WORDS = ["well-known", "t-shirt", "x-ray", "mid-air", "2-3", "hyphen-ated-word", "black-and-white",
                "hot-dog", "close-up", "double-decker", "e-mail", "co-worker", "re-enter", "3-year-old",
                "ten-year-old", "self-portrait", "New York-based", "U-turn", "A-frame", "T-Rex", "9-5",
                "pre-", "-ish", "anti-", "Wi-Fi", "K-9"]
NUMBERS = ["1,000", "3.5", "10:30", "1/2", "2nd", "5%", "$5", "#1", "100,000", "0.5", ".5", "5.", "-3",
           "+5", "3x", "4th", "1990s", "24/7", "12.30", "$3.50", "5pm", "10-15", "1st", "3rd", "50/50",
           "3:45pm", "2,5", "1.000,50", "007", "3/4", "1e6", "10,000,000", "99.9%", "$1,000", "#2",
           "12:00:00", "1:1", "2x4", "No. 5", "25th", "100s", "0", "42", "3.14159", "(555) 123-4567",
           "2024-01-01", "v2.0", "5'10\"", "6'", "12\"", "1/2\"", "45\u00b0", "30\u00b0C", "\u00bd", "\u00bc",
           "\u00be", "\u2153", "\u00b2", "\u00b3", "\u2070", "\u2082", "\u0661\u0662", "\uff11\uff12",
           "5\u00d73", "3 \u00d7 4", "10 \u00f7 2", "\u00b15", "\u20ac5", "\u00a35", "\u00a5100", "5\u00a2",
           "\u20b9", "5 %", "# 1", "$ 5", "1 000", "1\u00a0000"]
ABBREVIATIONS = ["Mr.", "Dr.", "St.", "U.S.", "a.m.", "p.m.", "etc.", "vs.", "e.g.", "i.e.", "Mrs.", "Jr.",
                 "U.S.A.", "Inc.", "No.", "approx.", "Ave.", "Mt.", "Co.", "Ltd.", "Jan.", "ft.", "lbs.",
                 "Ms.", "Prof.", "Sr.", "Corp.", "Dept.", "Gen.", "Gov.", "Sen.", "Rev.", "Bros.",
                 "A.M.", "P.M.", "U.K.", "D.C.", "N.Y.", "L.A.", "a.", "A.", "I.", "B.", "x.",
                 "vitamin C.", "plan B.", "the letter A.", "Fig.", "ca.", "cf.", "et al.", "Ph.D.",
                 "M.D.", "B.C.", "A.D.", "mph.", "oz.", "vol.", "p.", "pp.", "Capt.", "Lt."]
SYMBOLS = ["&", "@", "/", "*", "+", "=", "<", ">", "~", "^", "|", "\\", "_", "AT&T", "x@y.com",
           "http://example.com", "www.example.org", "and/or", "*star*", "_under_", "x+y", "x=y", "~x",
           "<3", ":)", ";-)", ":-(", "x|y", "C++", "#", "%", "\u00a7", "\u00a9", "\u00ae", "\u2122",
           "\u00b0", "\u00b1", "\u2022", "\u00b7", "\u2020", "\u00b6", "||", "|||", "&&", "==", "=>",
           "->", "<-", "<<", ">>", "**", "//", "\\\\", "__init__", "a_b", "a/b/c", "^_^", "o_O",
           "R&B", "Q&A", "B&W", "S&P", "&amp;", "&quot;", "&lt;", "&gt;", "<b>", "</b>", "<br>",
           "<skipped>", "[sic]", "{}", "[]", "()", "<>", "@user", "#hashtag", "$", "%%", "+1", "=)",
           "-LRB-", "-RRB-", "-lrb-", "-LSB-", "-LCB-", "*NL*", "::", ";;", "!?", "?!?", "!!!"]
UNICODE_WORDS = ["caf\u00e9", "na\u00efve", "\u00dcn\u00efc\u00f6d\u00e9", "cr\u00e8me br\u00fbl\u00e9e",
                 "pi\u00f1ata", "fa\u00e7ade", "Z\u00fcrich", "S\u00e3o Paulo", "\u00c9COLE", "Stra\u00dfe",
                 "STRASSE", "\u1e9e", "\u0130stanbul", "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03cc\u03c2",
                 "\u01c5", "\u732b", "\u72ac\u304c\u8d70\u308b", "\u65e5\u672c", "\ud55c\uad6d\uc5b4",
                 "\u041f\u0440\u0438\u0432\u0435\u0442", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
                 "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\U0001f642", "\U0001f436",
                 "\U0001f44d\U0001f3fd", "\u2764\ufe0f", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
                 "\u2615", "\u2600", "\u00d7", "\u00bd", "\u00b0", "\u00b5", "\u00e6", "\u0153", "\ufb01sh",
                 "\u00c5ngstr\u00f6m", "e\u0301", "\uff21\uff22\uff23", "\uff48\uff45\uff4c\uff4c\uff4f",
                 "\u00e0 la carte", "d\u00e9j\u00e0 vu", "jalape\u00f1o", "\u00d8resund", "\u0141\u00f3d\u017a",
                 "\u010ce\u0161ka", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", "\u0928\u092e\u0938\u094d\u0924\u0947",
                 "\u00bfqu\u00e9?", "\u00a1hola!", "\u2018quoted\u2019", "\u2026", "\u2030", "\u2116",
                 "\u2190", "\u2192", "\u221e", "\u2248", "\u2260", "\u2264", "\u00ac", "\u00a6", "\u00ad",
                 "\u00b4", "\u02c6", "\u02dc", "\ufffd", "\u3002", "\u3001", "\uff0c", "\uff01", "\uff1f",
                 "\u300c\u732b\u300d", "\u00b8"]
# spaces and invisible characters (none of them is a Java line breaker)
ODD_SPACES = ["\t", "  ", "   ", "\t\t", " \t ", "\n", " \n ", "\u00a0", "\u2009", "\u3000", "\u200b",
              "\u202f", "\u2002", "\u1680", "\u205f", "\ufeff", "\x1c", "\x1f", "\u200d", "\u2060",
              "\x00", "\x01", "\x7f", "\x80", "\x91", "\x92", "\x93", "\x94", "\x96", "\x97"]
ELLIPSES = ["...", "\u2026", "....", ". . .", "..", "......", "\u2026\u2026", ".."]
CLUSTERS = ["?!", "!!", "?", "!", "!!!", "?!?", "!?", "??", ";", ":", ",", ",,", ".", ". .", "?.", "!.",
            ".!", ":-", ";-", ",-", "-.", "'.", "\".", ".\"", ".'", "?\"", "!'", ").", "].", "}."]
BRACKETS = [("(", ")"), ("[", "]"), ("{", "}"), ("( ", " )"), ("(", ""), ("", ")"), ("<", ">"),
            ("[", ""), ("", "}"), ("((", "))"), ("\uff08", "\uff09"), ("\u3010", "\u3011")]

SPECIAL_STRINGS = [
    "", " ", "   ", "\t", "\n", " \n ", "\t \t", ".", "...", "\u2026", "?!", "!!", "?", "!", ",", ";", ":",
    "-", "--", "\u2014", "\u2013", "'", '"', "``", "''", "`", "(", ")", "()", "[]", "{}", "( )", "-LRB-",
    "-lrb-", "-RRB-", "(50%)", "a.", "A.", "I.", "x.", ". . .", "e.g.", "etc.", "U.S.", "Mr.", "&amp;",
    "&quot;", "<b>bold</b>", "&", "@", "#", "$", "%", "*", "\U0001f642", "\U0001f642\U0001f642", "\u732b",
    "a", "A", "dog", "Dog.", "DOG", "I", "'s", "n't", "'", "\u2019", "\u2018\u2019", "\u201c\u201d",
    "a.b.c.", "a.b", "a..b", "a...b", "a\u2026b", "1.", "1", "1.5", "-1", "+", "=", "|", "||", "|||",
    "\\", "/", "_", "~", "^", "<", ">", "<>", "< >", "a - b", "a -- b", "a---b", "- a", "a -", "-a", "a-",
    "'a'", '"a"', "`a'", "\u00a0", "\u200b", "\u3000", "\x00", ".a", ",a", "a,", "a,b", "1,2", "1, 2",
    "a . b", "a , b", "the end .", "A man .", "word", "WORD.", "Word!", "Word?", "word?!", "a\tb",
    "a\nb", "a\n\nb", "\na", "a\n", "&lt;3", "-- --", "... ...", "'' ``", "(((", ")))", "[[x]]",
    "{{x}}", "\u00bd", "\u00bd.", "1\u00bd", "3\u00bd cups", "50\u00b0", "\u00b0F", "\u00d7", "2\u00d72",
    "don't", "Don't.", "can't", "won't", "cannot", "gonna", "'tis", "y'all", "ma'am", "o'clock",
    "rock 'n' roll", "'90s", "dogs'", "I'm", "they're", "it's", "dog's", "don\u2019t",
]


def inject(words: list[str], rng: random.Random, kind: str) -> list[str]:
    """Inject one phenomenon of the given kind into a caption's word list."""
    pos = rng.randrange(len(words) + 1)
    if kind == "contraction":
        words.insert(pos, rng.choice(CONTRACTIONS))
    elif kind == "quote":
        o, c = rng.choice(QUOTE_PAIRS)
        i = rng.randrange(len(words))
        j = min(len(words) - 1, i + rng.choice([0, 0, 1, 2]))
        words[i] = o + words[i]
        words[j] = words[j] + c
    elif kind == "dash":
        r = rng.random()
        if r < 0.35:
            words.insert(pos, rng.choice(DASH_TOKENS))
        elif r < 0.55:
            i = rng.randrange(len(words))
            words[i] = rng.choice(["-", "--", "\u2014", "\u2013"]) + words[i]
        elif r < 0.7:
            i = rng.randrange(len(words))
            words[i] = words[i] + rng.choice(["-", "--", "\u2014", "\u2013"])
        elif r < 0.85 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i:i + 2] = [words[i] + rng.choice(["-", "--", "\u2014", "\u2013"]) + words[i + 1]]
        else:
            words.insert(pos, rng.choice(HYPHEN_WORDS))
    elif kind == "bracket":
        o, c = rng.choice(BRACKETS)
        if rng.random() < 0.15:
            words.insert(pos, o + c)
        else:
            i = rng.randrange(len(words))
            j = min(len(words) - 1, i + rng.choice([0, 1, 2]))
            words[i] = o + words[i]
            words[j] = words[j] + c
    elif kind == "ellipsis":
        e = rng.choice(ELLIPSES)
        r = rng.random()
        i = rng.randrange(len(words))
        if r < 0.4:
            words[i] = words[i] + e
        elif r < 0.7:
            words.insert(pos, e)
        else:
            words[i] = e + words[i]
    elif kind == "cluster":
        i = rng.randrange(len(words))
        words[i] = words[i] + rng.choice(CLUSTERS)
    elif kind == "number":
        words.insert(pos, rng.choice(NUMBERS))
    elif kind == "abbreviation":
        a = rng.choice(ABBREVIATIONS)
        if rng.random() < 0.3:
            words.append(a)
        else:
            words.insert(pos, a)
    elif kind == "symbol":
        s = rng.choice(SYMBOLS)
        if rng.random() < 0.25:
            i = rng.randrange(len(words))
            words[i] = words[i] + s
        else:
            words.insert(pos, s)
    elif kind == "unicode":
        u = rng.choice(UNICODE_WORDS)
        if rng.random() < 0.2:
            i = rng.randrange(len(words))
            words[i] = words[i] + u
        else:
            words.insert(pos, u)
    elif kind == "space":
        if len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i:i + 2] = [words[i] + rng.choice(ODD_SPACES) + words[i + 1]]
        else:
            words.append(rng.choice(ODD_SPACES))
    elif kind == "upper":
        i = rng.randrange(len(words))
        words[i] = words[i].upper()
    return words


INJECT_KINDS = ["contraction", "quote", "dash", "bracket", "ellipsis", "cluster", "number",
                "abbreviation", "symbol", "unicode", "space", "upper"]


def make_tokenizer_strings(rng: random.Random, n_total: int = 2010) -> list[tuple[str, str]]:
    items: dict[str, str] = {}
    for s in SPECIAL_STRINGS:
        items.setdefault(s, "special")
    # every listed phenomenon once in a plain caption
    for kind, pool in [("contraction", CONTRACTIONS), ("number", NUMBERS), ("abbreviation", ABBREVIATIONS),
                       ("symbol", SYMBOLS), ("unicode", UNICODE_WORDS), ("dash", DASH_TOKENS + HYPHEN_WORDS),
                       ("ellipsis", ELLIPSES), ("cluster", CLUSTERS)]:
        for p in pool:
            base = realize_short(Scene(rng), rng).split(" ")
            i = rng.randrange(1, len(base) + 1)
            s = style(" ".join(base[:i] + [p] + base[i:]), rng)
            items.setdefault(s, kind)
    for sp in ODD_SPACES:
        base = realize_short(Scene(rng), rng).split(" ")
        i = rng.randrange(1, len(base))
        items.setdefault(style(" ".join(base[:i]) + sp + " ".join(base[i:]), rng), "space")
        items.setdefault(sp + style(" ".join(base), rng) + sp, "space")
    for o, c in QUOTE_PAIRS + BRACKETS:
        base = realize_short(Scene(rng), rng).split(" ")
        i = rng.randrange(len(base))
        base[i] = o + base[i]
        base[-1] = base[-1] + c
        items.setdefault(style(" ".join(base), rng), "quote" if (o, c) in QUOTE_PAIRS else "bracket")
    # grammar captions with 0..3 injected phenomena
    while len(items) < n_total:
        scene = Scene(rng)
        r = rng.random()
        if r < 0.02:
            s = long_caption(scene, rng, 20)
            kind = "long"
        else:
            words = realize_short(scene, rng).split(" ")
            k = 0 if r < 0.18 else rng.choice([1, 1, 1, 2, 2, 3])
            kinds = [rng.choice(INJECT_KINDS) for _ in range(k)]
            for kd in kinds:
                words = inject(words, rng, kd)
            s = style(" ".join(words), rng)
            kind = "+".join(kinds) if kinds else "plain"
        items.setdefault(s, kind)
    return list(items.items())


# The last token of a line can depend on the NEXT line: Java reads the whole batch
# as one stream, and PTBLexer's rules for a final abbreviation-like token ("x.",
# "Fig.", "No.") look past the newline (a following sentence-start word such as
# "The"/"A" makes "x." lose its period; a following digit makes "Fig." keep it).
# This grid records that behaviour as one more batch.
CONTEXT_LASTS = ["a x.", "vitamin C.", "a Fig.", "a No.", "a etc.", "a U.S.", "a Mr.", "a room.", "a p.m.",
                 "a vs.", "a 5.", "a x. ", "a x.)", "a x.\"", "a x?"]
CONTEXT_NEXTS = ["The x", "A x", "A", "the x", "a x", "Ab", "AB", "A.", "Z z", "1", "1 a", "(1)", "", "  ",
                 "  The x", "<b> x", "\u00c9 x", "\"The x\"", "...", "THE x", "I x", "Two x"]
CONTEXT_STARTERS = [
    "The", "A", "An", "This", "That", "These", "Those", "There", "Then", "They", "Their", "Them", "He", "She",
    "It", "Its", "His", "Her", "We", "You", "I", "In", "On", "At", "But", "And", "Or", "So", "If", "When",
    "While", "Where", "Why", "What", "Who", "How", "Yes", "No", "Not", "Now", "Here", "Some", "Many", "Most",
    "Several", "All", "Another", "Each", "Every", "One", "Two", "Three", "After", "Before", "Once", "Today",
    "Our", "My", "Your", "Mr.", "Mrs.", "Dr.", "Also", "Although", "Because", "Both", "During", "Even", "For",
    "From", "However", "Meanwhile", "Since", "Still", "Such", "Thus", "Under", "Until", "With", "Without",
    "Yet", "Only", "Other", "Either", "Neither", "Let", "Please", "Though", "Instead", "Perhaps", "Maybe",
    "Just", "Is", "Are", "Was", "Do", "Can", "Will", "Has", "Have", "Man", "Dog", "Photo", "Picture",
    "Woman", "People", "Large", "White", "Mary", "New", "Any", "Nothing",
]


def context_batch() -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for last in CONTEXT_LASTS:
        for nxt in CONTEXT_NEXTS:
            lines += [(last, "context_last"), (nxt, "context_next")]
    for last in ["a x.", "a Fig.", "the letter A."]:
        for gap in ["", "  ", "...", "-"]:
            for nxt in ["The x", "A x", "1 a"]:
                lines += [(last, "context_last"), (gap, "context_gap"), (nxt, "context_next")]
    for w in CONTEXT_STARTERS:
        lines += [("a sign with the letter x.", "context_last"), (w + " x", "context_next")]
    lines.append(("a x.", "context_last"))  # the batch ends with "a x." (end of input)
    return lines


def tokenize_verified(strings: list[tuple[str, str]], n_sample: int) -> list[str]:
    """Tokenize the strings as ONE batch (pycocoevalcap PTBTokenizer) and prove the
    alignment: Java's line count (checked_tokenize), the batch in reverse order (only
    differences of a final period explained by the next lines are allowed), and a
    sample re-tokenized in windows of the string plus its next three lines."""
    raws = [s for s, _ in strings]
    for s in raws:
        for ch in LINE_BREAKERS:
            assert ch not in s, repr(s)
    tokenized = tokenize_list(raws)
    rev = tokenize_list(raws[::-1])[::-1]
    for i in range(len(raws)):
        if rev[i] != tokenized[i]:
            assert rev[i] + "." == tokenized[i] or tokenized[i] + "." == rev[i], (raws[i], tokenized[i], rev[i])
            window = [raws[i]] + raws[max(0, i - 3):i][::-1]
            assert tokenize_list(window)[0] == rev[i], (raws[i], window)
    step = max(1, len(raws) // n_sample)
    for i in list(range(0, len(raws), step))[:n_sample] + [len(raws) - 1]:
        assert tokenize_list(raws[i:i + 4])[0] == tokenized[i], (i, raws[i])
    return tokenized


def make_tokenizer_fixture(tool: dict) -> dict:
    rng = random.Random(SEED_TOKENIZER)
    strings = make_tokenizer_strings(rng)
    # 'pairs' keeps only strings whose tokens do not depend on the next line (those that
    # do are dropped; dropping changes neighbours, so repeat until none is left)
    dropped = []
    while True:
        raws = [s for s, _ in strings]
        batch = tokenize_list(raws)
        neutral = tokenize_neutral(raws)
        bad = [i for i, (a, b) in enumerate(zip(batch, neutral)) if a != b]
        if not bad:
            break
        dropped += [raws[i] for i in bad]
        strings = [x for i, x in enumerate(strings) if i not in set(bad)]
    tokenized = tokenize_verified(strings, 40)
    assert tokenized == batch
    # and tokenized alone (end of input right after the string), a sample agrees too
    step = len(strings) // 30
    for i in range(0, len(strings), step):
        assert tokenize_list([strings[i][0]]) == [tokenized[i]], strings[i]
    ctx = context_batch()
    ctx_tokenized = tokenize_verified(ctx, 10)
    return {
        "tool": tool,
        "procedure": "each list is ONE batch for pycocoevalcap's PTBTokenizer().tokenize (one image per "
                     "string, in list order), i.e. Java reads the strings joined by '\\n' (after Python "
                     "replaces '\\n' inside a string by ' '). Verified: Java prints one line per string; the "
                     "reversed batch gives the same result except for final-period differences that the "
                     "next lines explain; strings re-tokenized with their next three lines agree.",
        "batch_context": "the tokenization of a string's LAST token can depend on the start of the NEXT "
                         "string of the batch (or end of input for the last one): e.g. 'a x.' keeps 'x.' "
                         "unless the next line starts with a sentence-start word such as 'The x' or 'A x', "
                         "and 'a Fig.' loses its period unless the next line starts with a digit. "
                         "'context_pairs' shows this and must be tokenized as one batch, in order. 'pairs' "
                         "holds only strings whose tokens are the same with a neutral next line ('zzz'), "
                         "so each pair can also be checked on its own (%d generated strings that were "
                         "context-sensitive in the batch were dropped; a sample of pairs was also "
                         "tokenized alone and agrees)." % len(dropped),
        "pairs": [{"raw": s, "tokenized": t, "kind": k} for (s, k), t in zip(strings, tokenized)],
        "context_pairs": [{"raw": s, "tokenized": t, "kind": k} for (s, k), t in zip(ctx, ctx_tokenized)],
    }


# ---------------------------------------------------------------------------
# 2. score sets
# ---------------------------------------------------------------------------

def coco_files(images: list[tuple[int, list[str]]], results: list[tuple[int, str]], rng: random.Random,
               ann_id_start: int, shuffle_annotations: bool = True) -> tuple[dict, list]:
    """COCO annotation file + results list. images: [(image_id, refs)] in file order."""
    pairs = [(img_id, k, ref) for img_id, refs in images for k, ref in enumerate(refs)]
    if shuffle_annotations:
        # interleave the images' annotations but keep each image's references in order
        keys = [rng.random() for _ in pairs]
        by_img: dict[int, list] = {}
        for p in pairs:
            by_img.setdefault(p[0], []).append(p)
        order = sorted(range(len(pairs)), key=lambda i: keys[i])
        slots = [pairs[i][0] for i in order]
        taken = {img: 0 for img in by_img}
        pairs = []
        for img in slots:
            pairs.append(by_img[img][taken[img]])
            taken[img] += 1
    anns = []
    ann_id = ann_id_start
    for img_id, _, ref in pairs:
        anns.append({"image_id": img_id, "id": ann_id, "caption": ref})
        ann_id += rng.randrange(1, 40)
    refs_json = {
        "info": {"description": "synthetic captions written by scripts/make_metric_fixtures.py"},
        "images": [{"id": img_id, "file_name": "%012d.jpg" % img_id} for img_id, _ in images],
        "annotations": anns,
        "type": "captions",
    }
    res_json = [{"image_id": img_id, "caption": cap} for img_id, cap in results]
    return refs_json, res_json


def score_coco(coco: COCO, results: list) -> dict:
    """COCOEvalCap.evaluate without METEOR and SPICE, image_id = cocoRes.getImgIds()."""
    with quiet():
        cocoRes = coco.loadRes(copy.deepcopy(results))
    cocoEval = COCOEvalCap(coco, cocoRes)
    cocoEval.params["image_id"] = cocoRes.getImgIds()

    # --- body of COCOEvalCap.evaluate (pycocoevalcap 1.2), METEOR/SPICE left out ---
    imgIds = cocoEval.params["image_id"]
    gts = {}
    res = {}
    for imgId in imgIds:
        gts[imgId] = cocoEval.coco.imgToAnns[imgId]
        res[imgId] = cocoEval.cocoRes.imgToAnns[imgId]
    raw_gts = {k: [a["caption"] for a in v] for k, v in gts.items()}
    raw_res = {k: [a["caption"] for a in v] for k, v in res.items()}
    gts = checked_tokenize(gts)
    res = checked_tokenize(res)
    scorers = [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]
    for scorer, method in scorers:
        with quiet():
            score, scores = scorer.compute_score(gts, res)
        if type(method) == list:
            for sc, scs, m in zip(score, scores, method):
                cocoEval.setEval(sc, m)
                cocoEval.setImgToEvalImgs(scs, gts.keys(), m)
        else:
            cocoEval.setEval(score, method)
            cocoEval.setImgToEvalImgs(scores, gts.keys(), method)
    cocoEval.setEvalImgs()
    # --- end ---

    # BLEU sufficient statistics: the same BleuScorer Bleu.compute_score builds
    bs = BleuScorer(n=4)
    for i in gts.keys():
        bs += (res[i][0], gts[i])
    bleus, _ = bs.compute_score(option="closest", verbose=0)
    assert bleus == [cocoEval.eval[m] for m in METRICS[:4]]
    stats = {"testlen": bs._testlen, "reflen": bs._reflen,
             "guess": [sum(c["guess"][k] for c in bs.ctest) for k in range(4)],
             "correct": [sum(c["correct"][k] for c in bs.ctest) for k in range(4)]}
    # captions whose tokens depend on the next caption of their batch
    sensitive = []
    for which, raw, tok in (("refs", raw_gts, gts), ("cand", raw_res, res)):
        keys = [(i, k) for i in raw.keys() for k in range(len(raw[i]))]
        flat = [raw[i][k] for i, k in keys]
        neutral = tokenize_neutral(flat)
        for (i, k), r, n in zip(keys, flat, neutral):
            if tok[i][k] != n:
                sensitive.append({"image_id": i, "which": which, "index": k, "raw": r,
                                  "tokenized": tok[i][k], "tokenized_if_next_line_neutral": n})
    per_image = [{"image_id": e["image_id"], **{m: float(e[m]) for m in METRICS}} for e in cocoEval.evalImgs]
    assert [p["image_id"] for p in per_image] == list(imgIds)
    return {
        "corpus": {m: float(cocoEval.eval[m]) for m in METRICS},
        "bleu_stats": stats,
        "per_image": per_image,
        "tokenized": {str(i): {"refs": gts[i], "cand": res[i][0]} for i in imgIds},
        "image_order": "cocoRes.getImgIds(): the refs file's images order, restricted to images with a result",
        "batches": "PTBTokenizer runs twice: once on all references (image order, then annotation order "
                   "within an image), once on all candidates (image order)",
        "context_sensitive": sensitive,
        "_raw": (list(imgIds), raw_gts, raw_res),
    }


def score_files(refs_path: Path, results_path: Path, sanitize: bool = False) -> dict:
    if not sanitize:
        with quiet():
            coco = COCO(str(refs_path))
        results = json.loads(results_path.read_text())
    else:
        # the files keep the line breakers; score what pycocoevalcap gives once they are spaces
        def clean(s: str) -> str:
            for ch in SANITIZE:
                s = s.replace(ch, " ")
            return s
        ds = json.loads(refs_path.read_text())
        for a in ds["annotations"]:
            a["caption"] = clean(a["caption"])
        results = json.loads(results_path.read_text())
        for r in results:
            r["caption"] = clean(r["caption"])
        coco = COCO()
        coco.dataset = ds
        with quiet():
            coco.createIndex()
    return score_coco(coco, results)


def sacrebleu_block(image_ids: list[int], raw_refs: dict, raw_cands: dict, n_tok: int = 50) -> dict:
    hyps = [raw_cands[i] for i in image_ids]
    refs = [raw_refs[i] for i in image_ids]
    n_streams = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(n_streams)]
    result = sacrebleu.corpus_bleu(hyps, streams)
    metric = BLEU()
    again = metric.corpus_score(hyps, streams)
    assert (again.score, again.counts, again.totals, again.sys_len, again.ref_len) == \
        (result.score, result.counts, result.totals, result.sys_len, result.ref_len)
    tok = Tokenizer13a()
    seg_stats = metric._extract_corpus_statistics(hyps[:n_tok], [s[:n_tok] for s in streams])
    first = []
    for j, i in enumerate(image_ids[:n_tok]):
        assert metric._preprocess_segment(hyps[j]) == tok(hyps[j].rstrip())
        st = seg_stats[j]
        first.append({"image_id": i,
                      "hyp": tok(hyps[j].rstrip()),
                      "refs": [tok(r.rstrip()) for r in refs[j]],
                      "stats": {"hyp_len": st[0], "ref_len": st[1], "correct": st[2:6], "total": st[6:10]}})
    return {
        "call": "sacrebleu.corpus_bleu(hyps, ref_streams) with default settings "
                "(tokenize='13a', smooth_method='exp', lowercase=False, use_effective_order=False)",
        "signature": str(metric.get_signature()),
        "input": "raw captions (not PTB-tokenized); hyps in the set's image order (per_image order)",
        "ref_streams": "%d streams; stream k holds each image's k-th reference (in the image's annotation "
                       "order), or None where the image has fewer than k+1 references. sacrebleu drops "
                       "None entries per segment (Metric._cache_references); an empty string '' is NOT "
                       "dropped: it is a reference of length 0." % n_streams,
        "num_streams": n_streams,
        "score": result.score,
        "counts": list(result.counts),
        "totals": list(result.totals),
        "precisions": list(result.precisions),
        "bp": result.bp,
        "sys_len": result.sys_len,
        "ref_len": result.ref_len,
        "tokenized_note": "Tokenizer13a()(s.rstrip()) (what BLEU._preprocess_segment applies); refs list "
                          "only the image's references that exist; stats = [hyp_len, closest ref_len, "
                          "correct 1-4, total 1-4] for the segment",
        "first_images": first,
    }


def finish(entry: dict, sacre: bool = False) -> dict:
    image_ids, raw_gts, raw_res = entry.pop("_raw")
    if sacre:
        entry["sacrebleu"] = sacrebleu_block(image_ids, raw_gts, {k: v[0] for k, v in raw_res.items()})
    return entry


# ---------------------------------------------------------------------------
# main set
# ---------------------------------------------------------------------------

MAIN_KINDS = [("paraphrase", 30), ("identical", 5), ("partial", 14), ("shuffled", 8), ("unrelated", 10),
              ("very_short", 8), ("long", 8), ("raw_caps_punct", 10), ("odd", 7)]


def short_caption(scene: Scene, rng: random.Random) -> str:
    subjects = HUMANS if scene.human else ANIMALS
    sing, plur = subjects[scene.subject][0]
    noun = sing.split()[-1] if scene.count == 1 else plur.split()[-1]
    place_word = PLACES[scene.place][0].split()[-1]
    opts = [noun, f"{article(noun)} {noun}" if scene.count == 1 else f"two {noun}", f"{noun} {place_word}",
            f"{noun.capitalize()}.", f"a {scene.color} {noun}", place_word]
    return rng.choice(opts)


def raw_caps_punct(scene: Scene, rng: random.Random) -> str:
    s = realize(scene, rng)
    words = s.split(" ")
    t = rng.randrange(9)
    if t == 0:
        return s.upper() + rng.choice([".", "!", "!!", ""])
    if t == 1:
        i = rng.randrange(len(words))
        words[i] = "\u201c" + words[i] + "\u201d"
    elif t == 2:
        i = rng.randrange(len(words))
        words[i] = "(" + words[i] + ")"
    elif t == 3:
        words.insert(rng.randrange(1, len(words) + 1), rng.choice(["-", "--", "\u2014"]))
    elif t == 4:
        words[-1] += rng.choice(["...", "\u2026", "?!", "!!"])
    elif t == 5:
        words.insert(1, rng.choice(["it's", "that's", "there's", "who's"]))
    elif t == 6:
        i = rng.randrange(len(words) - 1) if len(words) > 1 else 0
        words[i] += ","
    elif t == 7:
        return "  " + s[0].upper() + s[1:] + ".  "
    else:
        i = rng.randrange(len(words))
        words[i] = words[i].capitalize()
        return " ".join(words).replace(" ", "\t", 1) + "."
    return style(" ".join(words), rng)


def make_main(rng: random.Random, n_images: int = 280):
    ids: list[int] = []
    seen = set()
    while len(ids) < n_images:
        i = rng.randrange(1, 600000)
        if i not in seen:
            seen.add(i)
            ids.append(i)
    scenes = [Scene(rng) for _ in ids]
    n_refs_choices = [5] * 70 + [4] * 8 + [6] * 8 + [7] * 4 + [3] * 4 + [2] * 3 + [1] * 3
    images = []
    for scene in scenes:
        images.append(make_refs(scene, rng, rng.choice(n_refs_choices)))
    # a few empty-string (and whitespace / punctuation-only) references
    for j, s in zip(rng.sample(range(n_images), 6), ["", "", "", "", " ", "."]):
        refs = images[j]
        if rng.random() < 0.5 and len(refs) > 1:
            refs[rng.randrange(len(refs))] = s
        else:
            refs.insert(rng.randrange(len(refs) + 1), s)
    kinds = [k for k, w in MAIN_KINDS for _ in range(w)]
    cands = []
    cand_kinds = []
    odd_pool = ["", "   ", "...", "\n", "dog dog dog dog dog", "a\ta\ta", "A man.\nA dog.", "?!", "-", "(",
                "don't can't won't", "\u732b \U0001f642", "a a a a a a a a", "THE THE THE", "'s", "1,000 3.5 10:30"]
    for j, scene in enumerate(scenes):
        kind = rng.choice(kinds)
        refs = images[j]
        if kind == "paraphrase":
            c = style(realize(scene, rng) if rng.random() < 0.5 else realize_short(scene, rng), rng)
        elif kind == "identical":
            c = rng.choice([r for r in refs if r.strip(" .")] or refs)
            if rng.random() < 0.3:
                c = c.upper()
        elif kind == "partial":
            c = style(realize(scene.variant(rng, rng.choice(["action", "place", "subject"])), rng), rng)
        elif kind == "shuffled":
            w = rng.choice([r for r in refs if len(r.split()) > 2] or refs).split()
            rng.shuffle(w)
            c = " ".join(w)
        elif kind == "unrelated":
            c = style(realize(scenes[(j + 1 + rng.randrange(n_images - 1)) % n_images], rng), rng)
        elif kind == "very_short":
            c = short_caption(scene, rng)
        elif kind == "long":
            c = long_caption(scene, rng, rng.choice([30, 35, 45, 60]))
        elif kind == "raw_caps_punct":
            c = raw_caps_punct(scene, rng)
        else:
            c = rng.choice(odd_pool)
        cands.append(c)
        cand_kinds.append(kind)
    order = list(range(n_images))  # images in the refs file: random order (not sorted by id)
    images_list = [(ids[j], images[j]) for j in order]
    results = [(ids[j], cands[j]) for j in order]
    rng.shuffle(results)  # results file order differs from the refs file order
    refs_json, res_json = coco_files(images_list, results, rng, ann_id_start=rng.randrange(100000, 200000))
    kinds_by_id = {str(ids[j]): cand_kinds[j] for j in order}
    return refs_json, res_json, kinds_by_id


def karpathy_tokens(s: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", "", s.lower().replace("\t", " ").replace("\n", " ")).split()


def make_karpathy(refs_json: dict, rng: random.Random) -> dict:
    anns: dict[int, list] = {}
    for a in refs_json["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    n = len(refs_json["images"])
    splits = ["train"] * (n - 140) + ["restval"] * 30 + ["val"] * 55 + ["test"] * 55
    rng.shuffle(splits)
    images = []
    sentid = 0
    for imgid, (img, split) in enumerate(zip(refs_json["images"], splits)):
        cocoid = img["id"]
        sents = []
        for a in anns[cocoid]:
            sents.append({"tokens": karpathy_tokens(a["caption"]), "raw": a["caption"], "imgid": imgid,
                          "sentid": sentid})
            sentid += 1
        images.append({"filepath": "val2014", "sentids": [s["sentid"] for s in sents], "filename":
                       "COCO_val2014_%012d.jpg" % cocoid, "imgid": imgid, "split": split,
                       "sentences": sents, "cocoid": cocoid})
    return {"images": images, "dataset": "coco"}


def score_karpathy_test(karpathy: dict, results: list) -> dict:
    test = [im for im in karpathy["images"] if im["split"] == "test"]
    ds = {"images": [{"id": im["cocoid"], "file_name": im["filename"]} for im in test],
          "annotations": [{"image_id": im["cocoid"], "id": s["sentid"], "caption": s["raw"]}
                          for im in test for s in im["sentences"]]}
    coco = COCO()
    coco.dataset = ds
    with quiet():
        coco.createIndex()
    ids = {im["cocoid"] for im in test}
    entry = score_coco(coco, [r for r in results if r["image_id"] in ids])
    entry["description"] = ("main.karpathy.json images with split == 'test' (in that file's order), "
                            "references = their sentences' raw text, candidates = main.results.json "
                            "restricted to those images")
    entry["image_order"] = "main.karpathy.json images order, test split only"
    return entry


# ---------------------------------------------------------------------------
# edge sets
# ---------------------------------------------------------------------------

EDGE_ID = 424242
EDGE_REFS = [
    "a red bucket and a mop in a small white room",
    "A laundry room with a washing machine and a red bucket. ",
    "a small room with two buckets, a mop and a sink.",
    "A mop leaning against the wall next to a bucket.",
    "This looks like a storage closet with cleaning supplies on the floor.",
]
LONG_UNIT = "a dog chasing a red ball across a green park near the lake"  # 12 words


def long_words(n: int) -> str:
    w = (LONG_UNIT.split() * (n // 12 + 1))[:n]
    return " ".join(w)


EDGE_CASES = [
    # (name, candidate, references or None for EDGE_REFS, description)
    ("empty_candidate", "", None, "empty candidate"),
    ("whitespace_only_candidate", "   ", None, "whitespace-only candidate"),
    ("punctuation_only_candidate", "...", None, "punctuation-only candidate"),
    ("single_word_candidate", "dog", None, "one-word candidate (BLEU epsilon artefacts)"),
    ("identical_to_a_reference", EDGE_REFS[0], None, "candidate identical to reference 0"),
    ("identical_to_reference_uppercase_with_period", EDGE_REFS[0].upper() + ".", None,
     "reference 0 upper-cased with a final period"),
    ("very_long_candidate_220_words", long_words(220), None, "220-word candidate"),
    ("very_long_candidate_240_words", long_words(240), None,
     "240-word candidate (the length of the original 'very_long_candidate_220_words' case); "
     "CIDEr of the edge image is a subnormal float"),
    ("repeated_word_candidate", " ".join(["a"] * 30), None, "'a' repeated 30 times"),
    ("apostrophes", "A woman's cat doesn't like the dog's bed, it's the cats' bowl.", None, "apostrophes"),
    ("hyphens", "A well-known x-ray t-shirt - worn mid-air -- by a 2-3 year-old.", None, "hyphens and dashes"),
    ("numbers", "2 women and 3.5 cats at 10:30 with 1,000 balloons, 25% off $5 #1 1/2.", None, "numbers"),
    ("unicode", "\u00dcn\u00efc\u00f6d\u00e9 na\u00efve fa\u00e7ade \u2014 \u201cquoted\u201d pi\u00f1ata "
                "\U0001f642 \u72ac \u00bd \u00d7 5\u00b0 bucket\u2019s mop", None, "accents, curly quotes, "
     "em dash, emoji (dropped by Java), CJK, fraction, multiplication sign, degree"),
    ("parentheses", "A bucket (red) next to a [mop] {here}.", None, "round, square and curly brackets"),
    ("newline_inside_candidate", "A red bucket\nnext to a mop.", None, "'\\n' inside (Python replaces it)"),
    ("tab_and_multiple_spaces", "A  red\tbucket   next to a mop", None, "tab and repeated spaces"),
    ("meteor_delimiter_in_candidate", "a red bucket ||| next to a mop", None, "'|||' in the candidate"),
    ("meteor_delimiter_in_reference", "a woman riding a bike", ["a woman ||| riding a bike", "a woman on a bike"],
     "'|||' in a reference"),
    ("nel_U0085", "a red bucket\x85next to a mop", None, "U+0085 (NEL) inside the candidate"),
    ("reference_empty_string", "a woman riding a bike", ["", "a woman on a bike"], "an empty-string reference"),
    ("single_reference", "a woman riding a bike", ["a woman rides a blue bike"], "a single reference"),
]
EDGE_SACREBLEU = ["reference_empty_string", "unicode", "numbers"]


def edge_background(rng: random.Random, n: int = 20):
    ids = []
    while len(ids) < n:
        i = rng.randrange(1, 600000)
        if i not in ids and i != EDGE_ID:
            ids.append(i)
    bg = []
    for i in ids:
        scene = Scene(rng)
        refs = [style(realize_short(scene, rng), rng) for _ in range(rng.choice([3, 4]))]
        bg.append((i, refs, style(realize_short(scene, rng), rng)))
    return bg


def edge_set_files(bg, edge_items, rng: random.Random):
    """edge_items: [(image_id, refs, [candidates])]; edge images go into the middle."""
    images = [(i, refs) for i, refs, _ in bg]
    results = [(i, c) for i, _, c in bg]
    for k, (img_id, refs, cands) in enumerate(edge_items):
        images.insert(10 + k, (img_id, refs))
        for c in cands:
            results.insert(10 + k, (img_id, c))
    return coco_files(images, results, rng, ann_id_start=900000000, shuffle_annotations=False)


# ---------------------------------------------------------------------------
# sacreBLEU tokenizer pairs
# ---------------------------------------------------------------------------

SACRE_SPECIAL = [
    "", " ", "a", "Hello, world!", "It's a dog's life.", "don't", "A man (in red) holds a [sign] {here}.",
    "&quot;quoted&quot;", "AT&amp;T", "&lt;b&gt;", "a &amp;quot; b", "&amp;amp;", "&QUOT;", "&apos;", "&#39;",
    "&nbsp;", "fish &amp chips", "x&lt;y&gt;z", "&", "&&", "<skipped>", "a <skipped> b", "<skipped>x",
    "<SKIPPED>", "<skip>", "well-\nknown", "well- \nknown", "well-\n known", "end-\n", "-\n", "a\nb",
    "a\n\nb", "\n", "3-\n4", "1,000", "1,000.50", "3.5", ".5", "5.", "1.", "a.", "U.S.", "e.g.", "etc.",
    "1.000,5", "10:30", "1/2", "$5", "5%", "#1", "2-3", "a-b", "2 - 3", "x--y", "-5", "5-", "--", "---",
    "3.5.", "1,2,3", "a,b,c", "a.b.c", "a,1", "1,a", "1.a", "a.1", ",5", "5,", "3,5.", "The end .",
    "...", "\u2026", "?!", "!!!", "(50%)", "'quoted'", '"quoted"', "\u201ccurly\u201d", "\u2018single\u2019",
    "caf\u00e9", "na\u00efve", "\u732b\u304c\u8d70\u308b", "\U0001f642", "\u00bd", "5\u00b0", "\u00d7",
    "x\u00a0y", "x\u2009y", "x\u3000y", "x\u200by", "x\x1cy", "x\x1fy", "x\x85y", "x\u2028y", "x\u2029y",
    "x\ry", "x\x0by", "x\x0cy", "x\ty", "  x  ", "x\u202fy", "x\u1680y", "x\ufeffy",
    "a{b}c", "a[b]c", "a|b", "a\\b", "a^b", "a_b", "a`b", "a~b", "a@b", "a:b", "a;b", "a<b>c", "a=b",
    "a?b", "a!b", "a#b", "a$b", "a%b", "a*b", "a+b", "a'b", "a\"b", "a/b", "http://example.com/a?b=c&d=e",
    "\u00bfqu\u00e9?", "\u00ab\u00bb", "\u2014", "\u2013", "1\u20132", "\u20ac5", "\u00a35",
    "Mr. Smith", "St. Louis", "3 p.m.", "No. 5", "$3.50.", "5,000,000", "0.5%", "1e-5", "1.2.3",
]


def make_sacre_tokenizer(rng: random.Random, tok_pairs: list[dict], n: int = 300) -> list[dict]:
    items: dict[str, None] = {}
    for s in SACRE_SPECIAL:
        items.setdefault(s, None)
    raws = [p["raw"] for p in tok_pairs if p["raw"].strip()]
    inserts = ["&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "-\n", "\n", "1,000", "3.5", "5.", ",", "."]
    while len(items) < n:
        s = rng.choice(raws)
        if rng.random() < 0.4:
            w = s.split(" ")
            w.insert(rng.randrange(len(w) + 1), rng.choice(inserts))
            s = " ".join(w)
        items.setdefault(s, None)
    tok = Tokenizer13a()
    return [{"raw": s, "tokenized": tok(s)} for s in items]


# ---------------------------------------------------------------------------

def to_json(obj, pad: str = "", width: int = 240) -> str:
    """JSON with one line per container element, except containers whose compact form
    is at most `width` characters, which stay on one line."""
    compact = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    if not isinstance(obj, (dict, list)) or not obj or len(compact) <= width:
        return compact
    inner = pad + " "
    if isinstance(obj, dict):
        items = [inner + json.dumps(k, ensure_ascii=True) + ": " + to_json(v, inner, width) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [inner + to_json(v, inner, width) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def dump(path: Path, obj, width: int = 240) -> None:
    text = to_json(obj, "", width) + "\n"
    assert json.loads(text) == obj
    path.write_text(text)


def java_version() -> str:
    p = subprocess.run(["java", "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)
    m = re.search(r'version "([^"]+)"', p.stdout.decode())
    return m.group(1) if m else "unknown"


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    tool = {
        "pycocoevalcap": pkg_version("pycocoevalcap"),
        "pycocotools": pkg_version("pycocotools"),
        "stanford_corenlp_jar": ptb_module.STANFORD_CORENLP_3_4_1_JAR,
        "java": java_version(),
        "sacrebleu": sacrebleu.__version__,
        "python": sys.version.split()[0],
    }
    summary = []

    # 1. tokenizer
    tokfix = make_tokenizer_fixture(tool)
    dump(OUT / "tokenizer.json", tokfix)
    summary.append(f"tokenizer.json: {len(tokfix['pairs'])} pairs")

    expected: dict = {}

    # 2. main
    rng = random.Random(SEED_MAIN)
    refs_json, res_json, kinds = make_main(rng)
    dump(OUT / "main.refs.json", refs_json)
    dump(OUT / "main.results.json", res_json)
    entry = finish(score_files(OUT / "main.refs.json", OUT / "main.results.json"), sacre=True)
    entry["description"] = "280 images, 1-7 references each (mostly 5), candidates of several kinds"
    entry["candidate_kinds"] = kinds
    expected["main"] = entry

    # Karpathy
    karpathy = make_karpathy(refs_json, rng)
    dump(OUT / "main.karpathy.json", karpathy, width=4000)
    expected["main_karpathy_test"] = finish(score_karpathy_test(karpathy, res_json))

    # edge sets
    erng = random.Random(SEED_EDGE)
    bg = edge_background(erng)
    for name, cand, refs, desc in EDGE_CASES:
        srng = random.Random(f"{SEED_EDGE}-{name}")
        r_json, s_json = edge_set_files(bg, [(EDGE_ID, refs or EDGE_REFS, [cand])], srng)
        dump(OUT / f"{name}.refs.json", r_json)
        dump(OUT / f"{name}.results.json", s_json)
        entry = finish(score_files(OUT / f"{name}.refs.json", OUT / f"{name}.results.json"),
                       sacre=name in EDGE_SACREBLEU)
        entry["description"] = f"edge image {EDGE_ID} ({desc}) + 20 background images"
        entry["edge_image_id"] = EDGE_ID
        expected[name] = entry

    # next_line_context: captions whose last token depends on the next caption of the batch
    srng = random.Random(f"{SEED_EDGE}-next-line")
    items = [
        (EDGE_ID, ["A sign with the letter B.", "A bottle of vitamin C.", "A red sign for platform A.",
                   "a man holding a sign that reads plan B.", "A street sign that says Main St."],
         ["A train waiting at platform B."]),
        (EDGE_ID + 2, ["A page that shows Fig.", "2 dogs in a park.", "The letter C.", "A mop.",
                       "A red bucket and a mop in a small white room"],
         ["A mop next to the letter X."]),
    ]
    r_json, s_json = edge_set_files(bg, items, srng)
    dump(OUT / "next_line_context.refs.json", r_json)
    dump(OUT / "next_line_context.results.json", s_json)
    entry = finish(score_files(OUT / "next_line_context.refs.json", OUT / "next_line_context.results.json"))
    entry["description"] = ("references and candidates ending in an abbreviation-like token ('B.', 'C.', "
                            "'Fig.'): PTBTokenizer keeps or drops their final period depending on the NEXT "
                            "caption of the same batch (see context_sensitive); 2 edge images + 20 "
                            "background images")
    assert entry["context_sensitive"], "expected context-sensitive captions"
    expected["next_line_context"] = entry

    # sanitized: line breakers inside captions, scored after replacing them by spaces
    srng = random.Random(f"{SEED_EDGE}-sanitized")
    items = [
        (EDGE_ID, EDGE_REFS, ["a red bucket\rnext to a mop"]),
        (EDGE_ID + 1, ["a woman ri\u2029ding a bike", "a woman\x0bon a bike.", "A woman\r\non a blue\x0cbike"],
         ["a woman\u2028riding a bike"]),
    ]
    r_json, s_json = edge_set_files(bg, items, srng)
    dump(OUT / "sanitized.refs.json", r_json)
    dump(OUT / "sanitized.results.json", s_json)
    entry = finish(score_files(OUT / "sanitized.refs.json", OUT / "sanitized.results.json", sanitize=True))
    entry["description"] = ("captions hold \\r, U+2028, U+2029, U+000B, U+000C (which make Java's "
                            "PTBTokenizer split lines and misalign every later caption); expected = "
                            "pycocoevalcap on the same data after replacing each of those characters by "
                            "one space ('\\n' is replaced by pycocoevalcap itself)")
    entry["sanitize"] = {"chars": SANITIZE, "replacement": " "}
    expected["sanitized"] = entry

    # two results for one image: pycocoevalcap fails
    srng = random.Random(f"{SEED_EDGE}-two")
    r_json, s_json = edge_set_files(bg, [(EDGE_ID, EDGE_REFS, ["a red bucket next to a mop", "a bucket"])], srng)
    dump(OUT / "two_candidates_same_image.refs.json", r_json)
    dump(OUT / "two_candidates_same_image.results.json", s_json)
    try:
        score_files(OUT / "two_candidates_same_image.refs.json", OUT / "two_candidates_same_image.results.json")
        raise SystemExit("expected pycocoevalcap to fail on two results for one image")
    except AssertionError:
        frame = traceback.extract_tb(sys.exc_info()[2])[-1]
        expected["two_candidates_same_image"] = {
            "description": f"edge image {EDGE_ID} has two results; pycocoevalcap raises instead of scoring",
            "error": {"type": "AssertionError", "file": "pycocoevalcap/" + "/".join(Path(frame.filename).parts[-2:]),
                      "function": frame.name, "code": frame.line},
        }

    # a reference image without a result: not evaluated (params image_id = cocoRes.getImgIds())
    srng = random.Random(f"{SEED_EDGE}-missing")
    r_json, s_json = edge_set_files(bg, [(EDGE_ID, EDGE_REFS, ["a red bucket next to a mop"])], srng)
    s_json = [r for r in s_json if r["image_id"] != bg[3][0]]
    dump(OUT / "reference_image_without_result.refs.json", r_json)
    dump(OUT / "reference_image_without_result.results.json", s_json)
    entry = finish(score_files(OUT / "reference_image_without_result.refs.json",
                               OUT / "reference_image_without_result.results.json"))
    entry["description"] = (f"image {bg[3][0]} is in the refs file but has no result: with image_id = "
                            "cocoRes.getImgIds() it is skipped (21 of 22 images evaluated)")
    expected["reference_image_without_result"] = entry

    # single
    srng = random.Random(SEED_SINGLE)
    scene = Scene(srng)
    r_json, s_json = coco_files([(77, make_refs(scene, srng, 5))], [(77, style(realize(scene, srng), srng))],
                                srng, ann_id_start=1)
    dump(OUT / "single.refs.json", r_json)
    dump(OUT / "single.results.json", s_json)
    entry = finish(score_files(OUT / "single.refs.json", OUT / "single.results.json"))
    entry["description"] = "one image: CIDEr is 0 (log(N) = 0 makes every tf-idf weight 0)"
    expected["single"] = entry

    dump(OUT / "expected.json", expected)

    # 3. sacreBLEU tokenizer pairs
    sacre_tok = make_sacre_tokenizer(random.Random(SEED_SACRE_TOK), tokfix["pairs"])
    dump(OUT / "sacrebleu_tokenizer.json", {
        "tool": {"sacrebleu": sacrebleu.__version__},
        "tokenizer": "sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(raw) (no rstrip, no lowercase)",
        "pairs": sacre_tok})

    # summary
    untok = sum(t.count("Untokenizable") for t in JAVA_STDERR)
    print(f"wrote {OUT.relative_to(REPO)}/ ({tool})")
    for line in summary:
        print("  " + line)
    print(f"  sacrebleu_tokenizer.json: {len(sacre_tok)} pairs")
    print(f"  Java 'Untokenizable' warnings: {untok}")
    for name, e in expected.items():
        if "corpus" not in e:
            print(f"  {name}: {e['error']['type']} in {e['error']['function']}: {e['error']['code']}")
            continue
        c = e["corpus"]
        extra = f" sacreBLEU {e['sacrebleu']['score']:.4f}" if "sacrebleu" in e else ""
        print(f"  {name}: {len(e['per_image'])} images  " +
              " ".join(f"{m}={c[m]:.6f}" for m in METRICS) + extra)
    total = 0
    for p in sorted(OUT.iterdir()):
        total += p.stat().st_size
    print(f"  {len(list(OUT.iterdir()))} files, {total / 1024:.1f} KiB in all")
    for p in sorted(OUT.iterdir(), key=lambda p: -p.stat().st_size)[:6]:
        print(f"    {p.name}: {p.stat().st_size / 1024:.1f} KiB")
    assert total < 1_500_000, "fixtures exceed 1.5 MB"


if __name__ == "__main__":
    main()
