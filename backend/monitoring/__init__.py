"""LLM risk supervisor: the kill switch of the live trader (see ``Docs/LIVE_STACK_RUNBOOK.md``).

Modules: ``risk_levels`` (OK < Caution < Halt), ``news_sources`` (headline inputs),
``rule_classifier`` (offline floor), ``llm_provider`` (OpenAI-compatible, fail-safe),
``audit_log`` (append-only trail), ``llm_supervisor`` (state machine, entry point),
``routes`` (FastAPI).
"""
