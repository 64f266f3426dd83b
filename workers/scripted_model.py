"""A tool-calling chat model that needs no network: its reply is a pure function of the
conversation, so the example agent (workers/agent_graph.py) is deterministic, and it streams
token by token like a real provider's model, so the `messages` stream mode carries tokens.

langchain-core's GenericFakeChatModel cannot stand in: it replays a fixed list and drops the
tool calls when it streams. This one asks for both of the agent's tools on a user's question,
and answers from their results once they are in the conversation.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

DEFAULT_CITY = "Paris"
# The agent's system prompt says who the user is and in what tone to answer; the model reads
# both back from it (a real model would simply follow it).
SYSTEM_PROMPT = "Address the user as {user}, in a {tone} tone."
_SYSTEM = re.compile(r"Address the user as (?P<user>.+?), in an? (?P<tone>\w+) tone\.")
_CITY = re.compile(r"\bin (?P<city>[A-Z][A-Za-z-]+)")


def plan_reply(messages: Sequence[BaseMessage], tools: Sequence[str]) -> AIMessage:
    """The model's whole reply: tool calls for a new question, else the answer from the
    tools' results that follow the question."""
    human = [index for index, message in enumerate(messages) if isinstance(message, HumanMessage)]
    question = messages[human[-1]].text if human else ""
    city = (match := _CITY.search(question)) and match["city"] or DEFAULT_CITY
    results = {
        message.name: message.text
        for message in messages[(human[-1] if human else 0) :]
        if isinstance(message, ToolMessage)
    }
    if not results and tools:
        turn = len(human)
        calls = [
            {"name": name, "args": {"city": city}, "id": f"call_{name}_{turn}", "type": "tool_call"}
            for name in tools
        ]
        names = " and ".join(tools)
        return AIMessage(content=f"Let me call {names} for {city}.", tool_calls=calls)
    system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
    found = _SYSTEM.search(system)
    user, tone = (found["user"], found["tone"]) if found else ("friend", "plain")
    weather = results.get("get_weather", "unknown weather")
    timezone = results.get("get_timezone", "unknown")
    opening = f"Hello {user}! In" if tone == "cheerful" else f"{user}, in"
    closing = " Enjoy your day!" if tone == "cheerful" else ""
    answer = f"{opening} {city} it is {weather}, time zone {timezone}.{closing}"
    return AIMessage(content=answer)


class ScriptedChatModel(BaseChatModel):
    """A chat model whose replies plan_reply() decides, streamed one word or space at a time,
    then its tool calls in one last chunk."""

    token_delay: float = 0.0  # seconds between tokens, to watch them stream

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The tools as a provider's API receives them (their names are what the model calls)."""
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        tools = [tool["function"]["name"] for tool in kwargs.get("tools") or []]
        return plan_reply(messages, tools)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(self._reply(messages, kwargs))):
            if index and self.token_delay:
                time.sleep(self.token_delay)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(self._reply(messages, kwargs))):
            if index and self.token_delay:
                await asyncio.sleep(self.token_delay)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _chunks(message: AIMessage) -> list[ChatGenerationChunk]:
    """The reply as a provider streams it: its words and spaces, then the tool calls."""
    tokens = [token for token in re.split(r"(\s)", message.text) if token]
    chunks = [AIMessageChunk(content=token) for token in tokens]
    if message.tool_calls:
        tool_call_chunks = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)
        ]
        chunks.append(AIMessageChunk(content="", tool_call_chunks=tool_call_chunks))
    return [ChatGenerationChunk(message=chunk) for chunk in chunks]
