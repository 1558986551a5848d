"""Framework adapters. Each module imports its framework lazily, when it is imported:

- :mod:`airlock_sdk.adapters.langchain` — LangChain / LangGraph tools (``langchain-core``);
- :mod:`airlock_sdk.adapters.openai_agents` — OpenAI Agents SDK function tools;
- :mod:`airlock_sdk.adapters.mcp_gateway` — an MCP server that proxies another MCP server
  and gates every tool call (``mcp``).
"""
