"""Where a task's examples come from: files in upstream release formats, or the public hub copies.

`xstilts data prepare` turns either into the canonical local layout that runs read
(`<data_dir>/<task>/{split}-{language}.jsonl`); `xstilts data check` reads upstream files in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Records = list[dict[str, Any]]
# (path, language) -> records of that language (a release file may hold several languages)
Reader = Callable[[Path, str], Records]
HubMapper = Callable[[Mapping[str, Any], Any], "dict[str, Any] | None"]


@dataclass(frozen=True)
class LocalFile:
    """Glob patterns below the source directory ({language} and {split} filled in) and their reader.

    Every match of every pattern is read and concatenated (UD merges all treebanks of a language;
    ANLI+ reads SNLI, MNLI and ANLI). With several patterns each must match, so a mixture is never
    silently missing a part.
    """

    patterns: tuple[str, ...]
    reader: Reader
    description: str = ""
    file_codes: Mapping[str, str] = field(default_factory=dict)  # language -> its code in file names ({code})
    companions: tuple[str, ...] = ()  # suffixes of files the reader opens beside each match (".eng", ".gold")
    languages: tuple[str, ...] = ()  # the languages such a file can hold (a SQuAD file: English); empty: any

    def holds(self, language: str) -> bool:
        return not self.languages or language in self.languages

    def expected(self, split: str, language: str) -> list[str]:
        """The patterns with this split and language filled in (for "not found" messages)."""
        code = self.file_codes.get(language, language)
        return [pattern.format(split=split, language=language, code=code) for pattern in self.patterns]

    def paths(self, root: Path, split: str, language: str) -> list[Path]:
        if not self.holds(language):
            return []
        found: list[Path] = []
        code = self.file_codes.get(language, language)
        for pattern in self.patterns:
            matches = sorted(
                p for p in root.glob(pattern.format(split=split, language=language, code=code)) if p.is_file()
            )
            if not matches and len(self.patterns) > 1:
                return []
            found += matches
        return found


@dataclass(frozen=True)
class HubFile:
    """One split of a public Hugging Face dataset: `datasets.load_dataset(dataset, config, split=split)`."""

    dataset: str
    config: str | None
    split: str
    mapper: HubMapper
    keep: Callable[[Mapping[str, Any]], bool] | None = None  # e.g. TyDiQA's per-language filter


@dataclass(frozen=True)
class Sources:
    """Per split ("train", "dev", "test"): the local layouts to try in order, and the hub copy by language."""

    local: Mapping[str, tuple[LocalFile, ...]] = field(default_factory=dict)
    hub: Mapping[str, Callable[[str], HubFile | list[HubFile]]] = field(default_factory=dict)
