"""The closed sets that configs, records, plans and reports speak in, each declared once.

Every module that checks, stores or prints one of these imports it from here (the config's schema, the
CLI's choices and the records take their literals from it). Chain modes, which carry code, are declared in
`xstilts.chain_modes`.
"""

from __future__ import annotations

import typing
from typing import Literal

TaskKind = Literal["classification", "multiple_choice", "qa", "tagging", "retrieval", "mlm"]
KINDS: tuple[str, ...] = typing.get_args(TaskKind)
UserTaskKind = Literal["classification", "multiple_choice", "qa", "tagging"]  # kinds a config's `tasks:` may declare

Split = Literal["dev", "test"]
DEV, TEST = typing.get_args(Split)
EVALUATION_SPLITS: tuple[str, ...] = (
    DEV,
    TEST,
)  # every target is evaluated on both where it has them; test is the default view

SelectionRule = Literal["dev", "dev-en"]
SELECTION_RULES: dict[str, str] = {  # rule -> what it chooses by, as the report says it
    "dev": "the target's mean over its dev languages",
    "dev-en": "the target's English dev score (strictly zero-shot)",
}
assert tuple(SELECTION_RULES) == typing.get_args(SelectionRule)

MIXTURE = "mixture"  # the combination study's multi-task arm: its method name and its stage's name
