"""Drives a running Tollgate's media endpoints with the official OpenAI Python SDK; exits non-zero
on any mismatch.

Usage: python python_media_check.py BASE_URL API_KEY OUT_DIR
Prints one JSON object with the request id of each call (and what it saw) for the calling node test
(tests/e2e/media-python.test.mjs), which checks the usage rows and the balance.
"""

import io
import json
import os
import struct
import sys

from openai import OpenAI


def wav(seconds: int, rate: int = 16_000) -> bytes:
    """A PCM WAV file of `seconds` of silence (mono, 16-bit): its duration is exact."""
    data = b"\0\0" * rate * seconds
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(data))
    return header + data


def main() -> None:
    base_url, api_key, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    seen = {}

    # Embeddings: floats asked explicitly, and the SDK's default (base64, decoded by the SDK).
    raw = client.embeddings.with_raw_response.create(
        model="emb-openai", input=["first chunk", "second chunk"], encoding_format="float"
    )
    emb = raw.parse()
    assert [d.embedding for d in emb.data] == [[0.5, -11 / 4, 0.25], [1.5, -12 / 4, 0.25]], emb
    assert emb.usage.prompt_tokens == 6, emb.usage
    seen["embeddings"] = raw.headers.get("x-request-id")
    default = client.embeddings.create(model="emb-openai", input="python")
    assert [round(x, 4) for x in default.data[0].embedding] == [0.5, -1.5, 0.25], default

    # Images: one per-image priced generation.
    raw = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse", size="1024x1024", quality="standard", response_format="b64_json"
    )
    img = raw.parse()
    assert len(img.data) == 1 and img.data[0].b64_json == "aW1hZ2U=", img
    seen["images"] = raw.headers.get("x-request-id")

    # Speech streamed to a file as it arrives.
    path = os.path.join(out_dir, "speech.mp3")
    text = "Hello from the Python SDK."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text
    ) as resp:
        assert resp.headers.get("content-type") == "audio/mpeg", resp.headers
        seen["speech"] = resp.headers.get("x-request-id")
        resp.stream_to_file(path)
    with open(path, "rb") as f:
        seen["speech_bytes"] = f.read().decode("latin-1")
    seen["speech_input"] = text

    # Transcription of a WAV made here: 3 s exactly.
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", io.BytesIO(wav(3)), "audio/wav")
    )
    tr = raw.parse()
    assert tr.text == "Hello world.", tr
    seen["transcription"] = raw.headers.get("x-request-id")

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
