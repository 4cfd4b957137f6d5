"""The report's sections, in the order they are printed: each is one function registered here.

A section function reads what the report computed once (`ReportInputs`) and returns its `Section`s (none
when it has nothing to say). Whether a section belongs to the answer (also printed in the terminal at the
end of a run) is a property of each `Section`, not of its title.

Adding a section: write a function `(inputs) -> list[Section]` and register it with `@report_section(name)`
(at the end, or `before=` a registered name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xstilts.analysis.diagnostics_tables import diagnostics_tables, search_section
from xstilts.analysis.headline import Block, Headline
from xstilts.analysis.render import Section
from xstilts.analysis.tables import latency_tables
from xstilts.languages import language_name
from xstilts.results.diagnostics import summarise as summarise_diagnostics
from xstilts.results.effects import units_loader
from xstilts.rundir.records import ResultRow
from xstilts.rundir.runs import RunDirectory


@dataclass(frozen=True)
class ReportInputs:
    """Everything a section may read, computed once per report."""

    run: RunDirectory  # where the report is written
    runs: list[RunDirectory]  # where it reads from (several when runs are merged)
    rows: list[ResultRow]
    headline: Headline
    tables: list[tuple[str, list[list[str]]]]  # the tables of every chain mode (scores, best length, paper's)
    language_notes: list[str]
    latency: dict[str, Any] | None
    images: dict[str, tuple[str, str]]  # plot -> (alt text, file name), for the plots that were drawn

    def plots(self, *names: str) -> list[tuple[str, str]]:
        return [self.images[name] for name in names if name in self.images]


SectionFunction = Callable[[ReportInputs], list[Section]]


@dataclass(frozen=True)
class RegisteredSection:
    name: str
    build: SectionFunction


REPORT_SECTIONS: list[RegisteredSection] = []


def report_section(name: str, before: str | None = None) -> Callable[[SectionFunction], SectionFunction]:
    """Register a section function under `name`, at the end or before the section named `before`."""

    def register(function: SectionFunction) -> SectionFunction:
        if any(section.name == name for section in REPORT_SECTIONS):
            raise ValueError(f"report section {name!r} is registered twice")
        entry = RegisteredSection(name, function)
        if before is None:
            REPORT_SECTIONS.append(entry)
        else:
            names = [section.name for section in REPORT_SECTIONS]
            if before not in names:
                raise ValueError(f"report section {before!r} is not registered (known: {', '.join(names)})")
            REPORT_SECTIONS.insert(names.index(before), entry)
        return function

    return register


def unregister_section(name: str) -> None:
    REPORT_SECTIONS[:] = [section for section in REPORT_SECTIONS if section.name != name]


def build_sections(inputs: ReportInputs) -> list[Section]:
    return [section for registered in REPORT_SECTIONS for section in registered.build(inputs)]


def _block_section(block: Block, inputs: ReportInputs) -> Section:
    images = inputs.plots(*block.plots)
    if block.content and isinstance(block.content[0], list):
        return Section(block.title, table=block.content, answer=block.answer, images=images)
    return Section(block.title, bullets=list(block.content), answer=block.answer, images=images)


@report_section("answer")
def answer(inputs: ReportInputs) -> list[Section]:
    """Per chain mode the answer table (first: with the notes and the gain and trade-off plots), then the blocks."""
    headline = inputs.headline
    first = Section(
        headline.tables[0][0] if headline.tables else "Transfer against chain length",
        headline.notes,
        table=headline.tables[0][1] if headline.tables else None,
        images=inputs.plots("gain", "tradeoff"),
        answer=True,
    )
    others = [Section(title, table=table, answer=True) for title, table in headline.tables[1:]]
    return [first, *others, *(_block_section(block, inputs) for block in headline.blocks)]


@report_section("search")
def search(inputs: ReportInputs) -> list[Section]:
    searched = next((record for source in inputs.runs if (record := source.read_search()) is not None), None)
    if searched is None:
        return []
    from xstilts.config import load_config
    from xstilts.results.search import regret

    config = load_config(inputs.runs[0].config_file, require_data=False)
    bullets, table = search_section(searched, regret(inputs.rows, units_loader(), config, searched))
    return [Section("Search", bullets=bullets), Section("Search rounds", table=table)]


@report_section("latency")
def latency(inputs: ReportInputs) -> list[Section]:
    measured = inputs.latency
    if measured is None:
        return []
    where = (
        f"Measured on {measured['device']} ({measured['precision']}, {measured['threads']} threads); each verdict "
        "compares the slope with the noise floor (the k = 0 model timed twice as two models)."
    )
    tables = [Section(title, table=table) for title, table in latency_tables(measured)[0]]
    return [Section("Latency measurement", [where], images=inputs.plots("latency")), *tables]


@report_section("tables")
def tables(inputs: ReportInputs) -> list[Section]:
    found = [Section(title, table=table) for title, table in inputs.tables]
    heatmap = inputs.plots("heatmap")
    return found + ([Section("Gain over k = 0 by language", images=heatmap)] if heatmap else [])


@report_section("diagnostics")
def diagnostics(inputs: ReportInputs) -> list[Section]:
    records = [record for source in inputs.runs for record in source.read_diagnostics()]
    if not records:
        return []
    summary = summarise_diagnostics(records, inputs.rows)
    return [Section(title, paragraphs, table=table) for title, table, paragraphs in diagnostics_tables(summary)]


@report_section("languages")
def languages(inputs: ReportInputs) -> list[Section]:
    codes = sorted({row["language"] for row in inputs.rows})
    named = ", ".join(f"{code} ({language_name(code)})" if language_name(code) != code else code for code in codes)
    return [Section("Languages", [named], bullets=inputs.language_notes)]
