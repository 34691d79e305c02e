"""Drives a running Tollgate with the official OpenAI Python SDK; exits non-zero on any mismatch.

Usage: python python_sdk_check.py BASE_URL API_KEY
Prints one JSON object with what it saw, for the calling node test to check further.
"""

import json
import sys

import openai
from openai import OpenAI


def main() -> None:
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    seen = {"sdk_version": openai.__version__}

    plain = client.chat.completions.with_raw_response.create(
        model="tollgate-echo", messages=[{"role": "user", "content": "hello world"}]
    )
    completion = plain.parse()
    assert completion.choices[0].message.content == "Echo: hello world", completion
    assert completion.usage.prompt_tokens == 9 and completion.usage.completion_tokens == 4
    seen["plain_request_id"] = plain.headers.get("x-request-id")

    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="tollgate-echo",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "streamed from python"}],
    ):
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Echo: streamed from python", pieces
    assert len(pieces) >= 5, pieces
    assert usage is not None and usage.completion_tokens == len(pieces)
    seen["stream_pieces"] = len(pieces)

    seen["models"] = [m.id for m in client.models.list()]
    assert "tollgate-echo" in seen["models"]

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.code == "model_not_found", e
    try:
        OpenAI(base_url=base_url, api_key="tg-bogus", max_retries=0).models.list()
        raise AssertionError("bogus key accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
    try:
        client.chat.completions.create(model="tollgate-echo", messages=[])
        raise AssertionError("empty messages accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body["param"] == "messages", e.body

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
