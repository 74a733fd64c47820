"""Whom to ask, per document or section: `contacts.toml` beside the rule documents.

A refusal names the owner of the closest topic instead of one address for everything (an IT
outage question goes to IT, not to HR). The file is optional; what it does not name falls back to
`RULEBOOK_CONTACT`::

    default = "人力资源部（hr@example.com）"        # optional; overrides RULEBOOK_CONTACT

    [documents]                                      # file name, or path relative to the folder
    "费用报销管理办法.txt" = "财务部（finance@example.com）"

    [sections]                                       # "file › heading" of a chapter or section
    "运营管理规范.md › 第四章 数据管理" = "数据安全组（data@example.com）"
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

from assistant.errors import RulebookError

CONTACTS_FILE = "contacts.toml"
SEPARATOR = " › "


def read_contacts(directory: Path) -> dict[str, str]:
    """`{"": default, "file": contact, "file › heading": contact}` from the folder's contacts file
    (empty when there is none)."""
    path = Path(directory) / CONTACTS_FILE
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulebookError(f"{CONTACTS_FILE} is not valid TOML ({exc}); fix it or remove it.") from exc
    out: dict[str, str] = {}
    if isinstance(data.get("default"), str) and data["default"].strip():
        out[""] = data["default"].strip()
    for table in ("documents", "sections"):
        for key, value in (data.get(table) or {}).items():
            if isinstance(value, str) and value.strip():
                out[key.strip()] = value.strip()
    return out


def contact_for(contacts: dict[str, str], source: str, path: tuple[str, ...], fallback: str) -> str:
    """The most specific contact for a clause of `source` under heading `path`."""
    names = [source, PurePosixPath(source).name]
    for depth in range(len(path), 0, -1):
        for name in names:
            key = SEPARATOR.join((name, *path[:depth]))
            if key in contacts:
                return contacts[key]
    for name in names:
        if name in contacts:
            return contacts[name]
    return contacts.get("", fallback)
