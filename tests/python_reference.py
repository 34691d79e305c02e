#!/usr/bin/env python3
"""Independent reference: OpenAI's Python tiktoken, offline, on tiktoken-rs's asset files.

Writes one JSON object per line {"encoding", "count", "text"} for the corpora (whole and line by
line) and a seeded fuzz; `cargo test --test tokens_reference -- --ignored python` compares them
with Tollgate's counts (TOLLGATE_PY_COUNTS=<file>).

    python3 tests/python_reference.py target/python-counts.jsonl
"""
import glob
import json
import os
import random
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

# The split patterns of tiktoken's openai_public.py (the same as tiktoken-rs's).
CL100K = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
assets = sorted(glob.glob(os.path.join(home, "registry/src/*/tiktoken-rs-0.12.1/assets")))[-1]
encodings = {
    "cl100k_base": tiktoken.Encoding("cl100k_base", pat_str=CL100K, special_tokens={},
                                     mergeable_ranks=load_tiktoken_bpe(os.path.join(assets, "cl100k_base.tiktoken"))),
    "o200k_base": tiktoken.Encoding("o200k_base", pat_str=O200K, special_tokens={},
                                    mergeable_ranks=load_tiktoken_bpe(os.path.join(assets, "o200k_base.tiktoken"))),
}

root = os.path.dirname(os.path.abspath(__file__))
texts = []
for path in sorted(glob.glob(os.path.join(root, "corpus", "*.txt"))):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    texts.append(text)
    texts.extend(text.splitlines(keepends=True))
rng = random.Random(20261128)
alphabet = list(" \n\r\taAsStT'ǅʰ中\u0301\u00a017٣./!🎉\u200dſé") + ["'ll", "'RE", "  "]
for _ in range(2000):
    s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
    if rng.random() < 0.3:
        s += chr(rng.choice([c for c in range(0x80, 0x3000)]))
    texts.append(s)

with open(sys.argv[1], "w", encoding="utf-8") as out:
    for name, enc in encodings.items():
        for t in texts:
            out.write(json.dumps({"encoding": name, "count": len(enc.encode_ordinary(t)), "text": t}) + "\n")
print(f"python_reference: {len(texts) * len(encodings)} counts from tiktoken {tiktoken.__version__} in {sys.argv[1]}")
