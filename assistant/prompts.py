"""Prompt and answer templates are files under `prompts/`, loaded and checked at start-up."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ConfigError

# template name → the variables it must use (and may only use)
REQUIRED: dict[str, set[str]] = {
    "answer_extractive_zh": {"document", "clause", "quote", "n"},
    "answer_extractive_en": {"document", "clause", "quote", "n"},
    "answer_also_zh": {"document", "clause", "quote", "n"},
    "answer_also_en": {"document", "clause", "quote", "n"},
    "answer_several_zh": set(),
    "answer_several_en": set(),
    "change_log_zh": {"document", "date"},
    "change_log_en": {"document", "date"},
    "superseded_zh": {"document", "by"},
    "superseded_en": {"document", "by"},
    "not_yet_effective_zh": {"document", "clause", "date"},
    "not_yet_effective_en": {"document", "clause", "date"},
    "refusal_zh": {"contact"},
    "refusal_en": {"contact"},
    "slack_apology_zh": {"reason", "contact"},
    "slack_apology_en": {"reason", "contact"},
    "llm_system_zh": set(),
    "llm_system_en": set(),
    "llm_user_zh": {"evidence", "question"},
    "llm_user_en": {"evidence", "question"},
    # Worked exchanges shown to the answering model before the question (assistant.llm.examples):
    # blocks separated by "---" lines, the evidence first, then question, answer, question, answer…
    # An empty file shows none.
    "llm_examples_zh": set(),
    "llm_examples_en": set(),
    "rewrite_zh": {"history", "question"},
    "rewrite_en": {"history", "question"},
    # The judge (assistant.judge): one prompt for every question, its answer words set by
    # RULEBOOK_LLM_JUDGE_WORDS; the thresholds in eval/TUNING.md were measured with this wording.
    "judge_system": set(),
    "judge_user": {"clause", "question"},
}


# Added after custom prompt folders existed: when a custom RULEBOOK_PROMPTS_DIR lacks them, the
# bundled files are used, so a folder copied from an earlier release keeps working.
SINCE_LATER = {"judge_system", "judge_user", "llm_examples_zh", "llm_examples_en"}
BUNDLED = Path(__file__).resolve().parents[1] / "prompts"


def variables(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class Prompts:
    templates: dict[str, str]

    def render(self, name: str, **values: object) -> str:
        return self.templates[name].format(**values)

    def lang(self, base: str, chinese: bool) -> str:
        return f"{base}_{'zh' if chinese else 'en'}"


def load_prompts(directory: Path, required: dict[str, set[str]] | None = None) -> Prompts:
    """Read every required template; fail with the file and the variable that is wrong."""
    required = REQUIRED if required is None else required
    templates: dict[str, str] = {}
    for name, needed in required.items():
        path = directory / f"{name}.txt"
        if name in SINCE_LATER and not path.exists():
            path = BUNDLED / f"{name}.txt"
        try:
            text = path.read_text(encoding="utf-8").rstrip("\n")
        except FileNotFoundError as exc:
            raise ConfigError(f"Prompt template {path} is missing (RULEBOOK_PROMPTS_DIR).") from exc
        found = variables(text)
        if found != needed:
            raise ConfigError(
                f"Prompt template {path} uses {{{', '.join(sorted(found))}}}, "
                f"expected {{{', '.join(sorted(needed))}}}."
            )
        templates[name] = text
    return Prompts(templates)
