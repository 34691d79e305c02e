#!/usr/bin/env python3
"""Independent reference for the open families: Hugging Face `tokenizers` on each family's
tokenizer.json (Llama 3, Qwen 3, DeepSeek V3, Gemma 3), tiktoken on Mistral's tekken.json the way
mistral-common's Tekkenizer builds it, and each family's chat template (tokenizer_config.json)
rendered with jinja2 the way transformers' `apply_chat_template` does.

Writes one JSON object per line:
  {"encoding", "count", "text"}                      plain text, `encode(text, add_special_tokens=False)`
  {"encoding", "count", "chat": <request JSON>}      the rendered template's tokens (generation prompt on)
`cargo test --test tokens_open -- --ignored python` compares them with Tollgate's counts
(TOLLGATE_PY_OPEN_COUNTS=<file>).

    python3 tests/python_reference_open.py [VOCAB_DIR] target/python-open-counts.jsonl
"""
import base64
import glob
import json
import os
import random
import sys

import jinja2
import tiktoken
from tokenizers import Tokenizer

root = os.path.dirname(os.path.abspath(__file__))
if len(sys.argv) == 3:
    vocab_dir, out_path = sys.argv[1], sys.argv[2]
else:
    vocab_dir = os.environ.get("TOLLGATE_VOCAB_DIR", os.path.join(root, "..", ".tools", "vocab"))
    out_path = sys.argv[1]

HF_FAMILIES = ["llama3", "qwen3", "deepseek_v3", "gemma3"]


def tekken():
    with open(os.path.join(vocab_dir, "tekken", "tekken.json"), encoding="utf-8") as f:
        t = json.load(f)
    config = t["config"]
    n = config["default_vocab_size"] - config["default_num_special_tokens"]
    ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in t["vocab"][:n]}
    return tiktoken.Encoding("tekken", pat_str=config["pattern"], mergeable_ranks=ranks, special_tokens={})


counters = {}
templates = {}
for name in HF_FAMILIES:
    tok = Tokenizer.from_file(os.path.join(vocab_dir, name, "tokenizer.json"))
    counters[name] = lambda text, tok=tok: len(tok.encode(text, add_special_tokens=False).ids)
    with open(os.path.join(vocab_dir, name, "tokenizer_config.json"), encoding="utf-8") as f:
        templates[name] = json.load(f)
enc = tekken()
counters["tekken"] = lambda text: len(enc.encode_ordinary(text))


def token_text(value):
    return value["content"] if isinstance(value, dict) else value


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


# transformers' chat-template environment: trim_blocks, lstrip_blocks, loopcontrols, its tojson.
env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
env.globals["raise_exception"] = raise_exception


def render(name, request):
    config = templates[name]
    template = env.from_string(config["chat_template"])
    return template.render(
        messages=request["messages"],
        tools=request.get("tools"),
        add_generation_prompt=True,
        bos_token=token_text(config.get("bos_token")) or "",
        eos_token=token_text(config.get("eos_token")) or "",
    )


texts = []
for path in sorted(glob.glob(os.path.join(root, "corpus", "*.txt"))):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    texts.append(text)
    texts.extend(text.splitlines(keepends=True))
rng = random.Random(20261201)
alphabet = list(" \n\r\taAsStT'ǅʰ中ひカ・\u0301\u00a017٣./!🎉\u200dſée\u0308▁<>") + [
    "'ll", "'RE", "  ", "<|im_start|>", "<think>", "<start_of_turn>", "\n\n\n", "12345", "x=1;", "。"]
for _ in range(3000):
    s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
    if rng.random() < 0.3:
        s += chr(rng.choice([c for c in range(0x80, 0x3100) if not 0xD800 <= c < 0xE000]))
    texts.append(s)

chats = [
    {"messages": [{"role": "user", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "  What is 2+2?  "}]},
    {"messages": [{"role": "system", "content": "Answer in Chinese."},
                  {"role": "user", "content": "你好，今天天气怎么样？"},
                  {"role": "assistant", "content": "今天天气很好。"},
                  {"role": "user", "content": "明天呢？\n"}]},
    {"messages": [{"role": "user", "content": "Write a haiku about tokens 🎉"},
                  {"role": "assistant", "content": "Bytes merge into words\nranks decide the order\ncounts agree at last"},
                  {"role": "user", "content": "Another, in code:\n```py\nprint('hi')\n```"}]},
]
# Tool definitions with their keys in sorted order: Tollgate re-serializes a request's JSON with
# sorted keys, where the template keeps the client's order (README "Token counting").
weather = {"function": {"description": "Get the weather", "name": "get_weather",
                        "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"],
                                       "type": "object"}},
           "type": "function"}
call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
for content in (None, ""):
    chats.append({"tools": [weather], "messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": content, "tool_calls": [call, call]},
        {"role": "tool", "tool_call_id": "c1", "content": "18°C, sunny"},
        {"role": "tool", "tool_call_id": "c1", "content": "18°C, sunny"},
        {"role": "assistant", "content": "It is 18°C and sunny."},
        {"role": "user", "content": "Thanks"}]})
chats.append({"messages": [
    {"role": "user", "content": "Think first."},
    {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nDone."},
    {"role": "user", "content": "Again"}]})
with open(os.path.join(root, "corpus", "english.txt"), encoding="utf-8") as f:
    chats.append({"messages": [{"role": "user", "content": f.read()[:2000]}]})

with open(out_path, "w", encoding="utf-8") as out:
    lines = 0
    for name, count in counters.items():
        for t in texts:
            out.write(json.dumps({"encoding": name, "count": count(t), "text": t}) + "\n")
            lines += 1
        if name in templates:
            for chat in chats:
                if name == "llama3" and any(m.get("content", "") is None for m in chat["messages"]):
                    # Llama 3's template writes a null content as the text "None" (Python's str of
                    # it); Tollgate counts a null content as empty.
                    continue
                try:
                    rendered = render(name, chat)
                except (jinja2.exceptions.TemplateError, TypeError):
                    continue  # the template refuses these messages (Gemma: roles must alternate)
                out.write(json.dumps({"encoding": name, "count": count(rendered), "chat": chat}) + "\n")
                lines += 1
print(f"python_reference_open: {lines} counts (tokenizers, tiktoken {tiktoken.__version__}) in {out_path}")
