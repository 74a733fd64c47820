"""Project layout rules: the core imports no adapter library; prompts are data and all render."""

from __future__ import annotations

import ast
from pathlib import Path

from assistant.config import Settings
from assistant.prompts import REQUIRED, load_prompts, variables

from .conftest import ROOT

ADAPTER_LIBRARIES = {"fastapi", "starlette", "uvicorn", "slack_bolt", "slack_sdk", "typer",
                     "click", "rich", "sse_starlette", "lark_oapi", "dingtalk_stream", "openai"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_web_slack_or_cli_library() -> None:
    core_files = [p for p in (ROOT / "assistant").rglob("*.py") if "adapters" not in p.parts]
    core_files += list((ROOT / "ingest").rglob("*.py"))
    assert len(core_files) > 8
    for path in core_files:
        bad = imported_modules(path) & ADAPTER_LIBRARIES
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_prompt_renders() -> None:
    prompts = load_prompts(Settings().prompts_dir)
    for name, needed in REQUIRED.items():
        text = prompts.render(name, **{v: f"<{v}>" for v in needed})
        assert all(f"<{v}>" in text for v in needed)
        assert variables(prompts.templates[name]) == needed


def test_prompt_text_lives_only_in_prompts() -> None:
    # The user-facing wording of answers and refusals is not hard-coded in Python.
    for path in (ROOT / "assistant").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "没有找到能回答" not in source and "has no clause" not in source, path
