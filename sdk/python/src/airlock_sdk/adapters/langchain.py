"""LangChain / LangGraph: gate any ``BaseTool`` (or tool function) through Airlock.

::

    from airlock_sdk.adapters.langchain import gate_tools

    tools = gate_tools([send_email, get_order_status], airlock)
    graph = ...ToolNode(tools)...            # or create_agent(model, tools)

The gated tool has the inner tool's name, description and argument schema, so the model
sees no difference. When the model calls it, the arguments go to Airlock first; the inner
tool runs only when allowed or approved, with the approved (possibly edited) arguments.
Otherwise the tool answers with a ``ToolMessage`` (status ``error``) whose text says what
happened, including a reviewer's reason for a rejection, so the model can adapt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.tools import BaseTool, ToolException
from langchain_core.tools import tool as make_tool

from airlock_sdk import gating
from airlock_sdk.adapters._common import (
    async_client,
    json_arguments,
    message_for_model,
    sync_client,
)
from airlock_sdk.aio import AsyncAirlock
from airlock_sdk.client import Airlock
from airlock_sdk.errors import AirlockError


class AirlockGatedTool(BaseTool):
    """A tool that asks Airlock before running ``inner``. Build it with :func:`gate_tool`."""

    inner: BaseTool
    airlock_spec: Any
    airlock_client: Any = None
    handle_tool_error: bool = True

    def _split(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(arguments the model chose, which go to the gate; injected ones, which do not)."""
        schema = self.inner.tool_call_schema
        if isinstance(schema, dict):
            visible = set((schema.get("properties") or {}).keys())
        else:
            visible = set(getattr(schema, "model_fields", {}) or kwargs)
        gated = {k: v for k, v in kwargs.items() if k in visible}
        injected = {k: v for k, v in kwargs.items() if k not in visible}
        return json_arguments(gated), injected

    def _run(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        gated, injected = self._split(kwargs)
        child = patch_config(config, callbacks=run_manager.get_child() if run_manager else None)

        def run(approved: dict[str, Any]) -> Any:
            return self.inner.invoke({**approved, **injected}, config=child)

        try:
            return gating.execute(sync_client(self.airlock_client), self.airlock_spec, gated, run)
        except AirlockError as exc:
            raise ToolException(message_for_model(self.airlock_spec.tool, exc)) from exc

    async def _arun(
        self,
        *args: Any,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
        **kwargs: Any,
    ) -> Any:
        gated, injected = self._split(kwargs)
        child = patch_config(config, callbacks=run_manager.get_child() if run_manager else None)

        async def run(approved: dict[str, Any]) -> Any:
            return await self.inner.ainvoke({**approved, **injected}, config=child)

        try:
            return await gating.aexecute(
                async_client(self.airlock_client), self.airlock_spec, gated, run
            )
        except AirlockError as exc:
            raise ToolException(message_for_model(self.airlock_spec.tool, exc)) from exc


def gate_tool(
    tool: BaseTool | Callable[..., Any],
    client: Airlock | AsyncAirlock | None = None,
    *,
    name: str | None = None,
    effect: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AirlockGatedTool:
    """Wrap ``tool`` (a ``BaseTool`` or a function, made a tool with ``@tool``) so that
    every call is gated by Airlock under the tool name ``name`` (default: the tool's).

    ``client`` is an :class:`~airlock_sdk.Airlock` or :class:`~airlock_sdk.AsyncAirlock`
    (default: the module default client); sync and async runs both work. ``summary``,
    ``blast_radius``, ``rationale``, ``evidence``, ``release``, ... are values or functions
    of the arguments dict, as in :meth:`~airlock_sdk.Airlock.gated`."""
    inner = tool if isinstance(tool, BaseTool) else make_tool(tool)
    spec = gating.make_spec(name or inner.name, effect, timeout, options)
    return AirlockGatedTool(
        name=inner.name,
        description=inner.description,
        args_schema=inner.args_schema,
        return_direct=inner.return_direct,
        inner=inner,
        airlock_spec=spec,
        airlock_client=client,
    )


def gate_tools(
    tools: Sequence[BaseTool | Callable[..., Any]],
    client: Airlock | AsyncAirlock | None = None,
    *,
    per_tool: dict[str, dict[str, Any]] | None = None,
    **options: Any,
) -> list[AirlockGatedTool]:
    """:func:`gate_tool` for each tool; ``per_tool`` maps a tool name to extra options
    (``effect``, ``summary``, ``blast_radius``, ...) for that tool."""
    gated = []
    for tool in tools:
        inner = tool if isinstance(tool, BaseTool) else make_tool(tool)
        gated.append(
            gate_tool(inner, client, **{**options, **(per_tool or {}).get(inner.name, {})})
        )
    return gated


__all__ = ["AirlockGatedTool", "gate_tool", "gate_tools"]
