"""Drives a running Tollgate with LangChain for Python (langchain-openai, langchain-anthropic).

Usage: python langchain_check.py BASE_URL API_KEY POOR_KEY CHAT_MODEL CLAUDE_MODEL CLAUDE_TRANSLATED EMBED_MODEL
  BASE_URL  the gateway's origin (no /v1); API_KEY a funded key; POOR_KEY a key whose tenant has no credit.

Every call runs with its own `X-Session-Id` (the client's `default_headers`), so that the calling node test
finds each call's usage row. Prints one JSON object: per call, the session id, the answer and the usage
LangChain reported; and the errors LangChain raised. Asserts only what LangChain itself must do; the node
test compares with the gateway's rows and the balance.

OpenAIEmbeddings' default (`check_embedding_ctx_length=True`) tokenizes the texts with tiktoken and sends
token id arrays; tiktoken's encoding file is read from TIKTOKEN_CACHE_DIR, which the node test fills from
tiktoken-rs's asset (same bytes, same hash), so nothing is downloaded.
"""

import json
import sys
import uuid

import anthropic
import openai
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings


def session() -> str:
    return f"lc-py-{uuid.uuid4().hex[:12]}"


def usage_of(meta) -> dict:
    return {"input": meta["input_tokens"], "output": meta["output_tokens"], "total": meta["total_tokens"]}


def main() -> None:
    base, key, poor_key, chat_model, claude_model, claude_translated, embed_model = sys.argv[1:8]
    seen: dict = {"calls": {}, "errors": {}}

    def openai_chat(sid: str, **kw) -> ChatOpenAI:
        return ChatOpenAI(
            model=chat_model,
            base_url=f"{base}/v1",
            api_key=kw.pop("api_key", key),
            max_retries=0,
            default_headers={"X-Session-Id": sid},
            **kw,
        )

    def claude(sid: str, **kw) -> ChatAnthropic:
        return ChatAnthropic(
            model=kw.pop("model", claude_model),
            base_url=base,
            api_key=kw.pop("api_key", key),
            max_retries=0,
            max_tokens=200,
            default_headers={"X-Session-Id": sid},
            **kw,
        )

    messages = [SystemMessage("You are terse."), HumanMessage("hello from langchain python")]

    # ChatOpenAI.invoke
    sid = session()
    msg = openai_chat(sid).invoke(messages)
    seen["calls"]["openai_invoke"] = {"session": sid, "text": msg.content, "usage": usage_of(msg.usage_metadata)}

    # ChatOpenAI.stream with stream_usage=True: the usage arrives on the last chunk.
    sid = session()
    text, agg = "", None
    for chunk in openai_chat(sid, stream_usage=True).stream(messages):
        text += chunk.content
        agg = chunk if agg is None else agg + chunk
    assert agg.usage_metadata, "no usage in the stream"
    seen["calls"]["openai_stream"] = {"session": sid, "text": text, "usage": usage_of(agg.usage_metadata)}

    # ChatAnthropic.invoke / stream on /v1/messages.
    sid = session()
    msg = claude(sid).invoke(messages)
    seen["calls"]["anthropic_invoke"] = {"session": sid, "text": msg.content, "usage": usage_of(msg.usage_metadata)}
    for name, model in (("anthropic_stream", claude_model), ("anthropic_translated_stream", claude_translated)):
        sid = session()
        text, agg = "", None
        for chunk in claude(sid, model=model).stream(messages):
            text += chunk.text if isinstance(chunk.text, str) else chunk.text()
            agg = chunk if agg is None else agg + chunk
        seen["calls"][name] = {"session": sid, "text": text, "usage": usage_of(agg.usage_metadata)}

    # OpenAIEmbeddings with its defaults: token id arrays, base64 left to the SDK.
    sid = session()
    emb = OpenAIEmbeddings(
        model=embed_model, base_url=f"{base}/v1", api_key=key, max_retries=0, default_headers={"X-Session-Id": sid}
    )
    docs = emb.embed_documents(["LangChain document one.", "Document two, a little longer."])
    assert len(docs) == 2 and all(len(v) == 3 for v in docs), docs
    seen["calls"]["embeddings"] = {"session": sid, "vectors": docs}

    # Errors: LangChain lets the SDKs' own error types through, with the gateway's message.
    try:
        openai_chat(session(), api_key="tg-bogus").invoke("hi")
        raise AssertionError("bogus key accepted")
    except openai.AuthenticationError as e:
        seen["errors"]["openai_invalid_key"] = {"status": e.status_code, "code": e.code, "message": e.body["message"]}
    try:
        openai_chat(session(), api_key=poor_key).invoke("hi")
        raise AssertionError("unfunded key accepted")
    except openai.APIStatusError as e:
        seen["errors"]["openai_no_credit"] = {"status": e.status_code, "code": e.code, "message": e.body["message"]}
    try:
        claude(session(), api_key=poor_key).invoke("hi")
        raise AssertionError("unfunded key accepted")
    except anthropic.APIStatusError as e:
        seen["errors"]["anthropic_no_credit"] = {"status": e.status_code, "type": e.body["error"]["type"], "message": e.body["error"]["message"]}
    try:
        claude(session(), api_key="tg-bogus").invoke("hi")
        raise AssertionError("bogus key accepted")
    except anthropic.AuthenticationError as e:
        seen["errors"]["anthropic_invalid_key"] = {"status": e.status_code, "message": e.body["error"]["message"]}

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
