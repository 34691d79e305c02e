"""The Anthropic Python SDK against the gateway: one plain message and one stream.

argv: base URL, key, model. Prints one JSON line: the reply texts, the output tokens each
reported, and the plain request's id (from the response headers)."""

import json
import sys

import anthropic

base_url, key, model = sys.argv[1:4]
client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0)
raw = client.messages.with_raw_response.create(
    model=model, max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
)
plain = raw.parse()
with client.messages.stream(
    model=model, max_tokens=100, messages=[{"role": "user", "content": "stream this please"}]
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
print(
    json.dumps(
        {
            "plain_text": plain.content[0].text,
            "plain_output_tokens": plain.usage.output_tokens,
            "plain_request_id": raw.headers.get("x-request-id"),
            "stream_text": streamed,
            "stream_output_tokens": final.usage.output_tokens,
        }
    )
)
