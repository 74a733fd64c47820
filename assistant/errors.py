"""Domain exceptions. The core raises them; the edges (CLI, web, Slack) turn them into messages."""


class RulebookError(Exception):
    """Base class; the message always names the next step for the user."""


class IndexNotBuilt(RulebookError):
    def __init__(self, data_dir: str) -> None:
        super().__init__(
            f"No rulebook index in {data_dir}. Run `rulebook ingest DIR --data-dir {data_dir}` first."
        )


class IndexMismatch(RulebookError):
    """The index was built with another embedding model than the one configured."""


class UnsupportedFile(RulebookError):
    """A file that cannot be read as a rule document; the message is the one-line reason."""


class ConfigError(RulebookError):
    """A setting is invalid; the message says which and how to fix it."""


class ComposerError(RulebookError):
    """An answer composer (e.g. an LLM endpoint) failed; the caller falls back to the offline one."""
