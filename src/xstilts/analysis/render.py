"""One report, two renderings: sections as markdown (report.md, the terminal summary) and as one self-contained
HTML page (report.html, images embedded)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from xstilts.rundir.runs import RunDirectory


@dataclass
class Section:
    """One heading of the report, rendered the same way to markdown and HTML."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: list[list[str]] | None = None
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, file name in the run directory)
    answer: bool = False  # part of the answer: also printed in the terminal summary at the end of a run


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def embedded_image(path: Path, alt: str | None = None) -> str:
    import base64

    return (
        f'<img alt="{alt or path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
        if path.is_file()
        else ""
    )


def render_markdown(name: str, intro: str, sections: list[Section], footer: str | None) -> str:
    md = [f"# xstilts report: {name}", "", intro, ""]
    for section in sections:
        md += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            md += [paragraph, ""]
        if section.table:
            md += [markdown_table(section.table), ""]
        if section.bullets:
            md += [f"- {line}" for line in section.bullets] + [""]
        for alt, image in section.images:
            md += [f"![{alt}]({image})", ""]
    md += [footer, ""] if footer else []
    return "\n".join(md)


def render_html(run: RunDirectory, name: str, intro: str, sections: list[Section], footer: str | None) -> str:
    """A self-contained page (images embedded); images scale to the window."""
    body = []
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        if section.table:
            body.append(html_table(section.table))
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
        body += [embedded_image(run.file(image), alt) for alt, image in section.images]
    if footer:
        body.append(f"<p>{html.escape(footer)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%;height:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(name)}</title><style>{style}</style></head><body>"
        f"<h1>xstilts report: {html.escape(name)}</h1><p>{html.escape(intro)}</p>{''.join(body)}</body></html>"
    )
