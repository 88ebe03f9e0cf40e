"""Checks of a rendered report page as a reader meets it (issue #14), from the HTML alone (the standard
library's ``html.parser``), so they run with or without a browser:

- the first section is the answer and states the target's prediction (a predicted final with a band);
- every figure sits in a ``<figure class="fig">`` whose caption has a title naming its fit
  (``data-fit``), a legend naming the band's level ("95% ..."), and its final values (numbers);
- no number in a parameter table lies below 1e-100 (other than 0) or above 1e100;
- the provenance comes last, collapsed in a ``<details>`` element.

    problems = page_problems(Path("report/report.html").read_text())   # [] when the page is right
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["page_problems", "PageFacts", "read_page"]

_VOID = {"img", "meta", "br", "hr", "link", "input", "source", "wbr"}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_LEVEL = re.compile(r"\b\d{1,2}(?:\.\d+)?% ")


@dataclass
class PageFacts:
    """What the checks read from a page: its sections (id, text), figures (fit, title, legend, finals,
    images), the parameter-table cells, images outside figures, and where the provenance sits."""

    sections: list[dict[str, str]] = field(default_factory=list)
    figures: list[dict[str, str | int]] = field(default_factory=list)
    param_cells: list[str] = field(default_factory=list)
    loose_images: int = 0
    provenance_in_details: bool = False


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = PageFacts()
        self.stack: list[tuple[str, dict[str, str]]] = []

    def _inside(self, tag: str, cls: str | None = None) -> bool:
        return any(t == tag and (cls is None or cls in a.get("class", "").split()) for t, a in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        f = self.facts
        if tag == "img":
            if self._inside("figure", "fig"):
                f.figures[-1]["images"] = int(f.figures[-1]["images"]) + 1
            else:
                f.loose_images += 1
        if tag in _VOID:
            return
        if tag == "section":
            f.sections.append({"id": a.get("id", ""), "text": ""})
        if tag == "figure" and "fig" in a.get("class", "").split():
            f.figures.append(
                {"fit": a.get("data-fit", ""), "title": "", "legend": "", "finals": "", "images": 0}
            )
        if tag == "td" and self._inside("table", "params"):
            f.param_cells.append("")
        if tag == "details" and self.facts.sections and self.facts.sections[-1]["id"] == "provenance":
            f.provenance_in_details = True
        self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        f = self.facts
        if self._inside("section") and f.sections:
            f.sections[-1]["text"] += data
        if self._inside("figure", "fig") and f.figures:
            for key in ("title", "legend", "finals"):
                if self._inside("span", f"fig-{key}"):
                    f.figures[-1][key] = str(f.figures[-1][key]) + data
        if self._inside("table", "params") and self._inside("td") and f.param_cells:
            f.param_cells[-1] += data


def read_page(page: str) -> PageFacts:
    """The facts the checks use, read from a report page."""
    reader = _Reader()
    reader.feed(page)
    reader.close()
    return reader.facts


def page_problems(page: str) -> list[str]:
    """Every way the page falls short of the checks in the module doc (empty when it passes)."""
    facts, out = read_page(page), []
    ids = [s["id"] for s in facts.sections]
    if not ids or ids[0] != "answer":
        out.append(f"the first section is {ids[:1] or 'missing'}, not the answer")
    else:
        text = " ".join(facts.sections[0]["text"].split())
        if not re.search(r"predicted final loss " + _NUMBER.pattern, text):
            out.append("the answer does not state a predicted final loss")
        if not _LEVEL.search(text) or "band" not in text:
            out.append("the answer does not state the band with its level")
    if ids and ids[-1] != "provenance":
        out.append("the provenance is not the last section")
    if "provenance" in ids and not facts.provenance_in_details:
        out.append("the provenance is not collapsed in a <details> element")
    if facts.loose_images:
        out.append(f"{facts.loose_images} image(s) outside a captioned figure")
    for i, fig in enumerate(facts.figures):
        title, legend, finals, fit = (str(fig[k]) for k in ("title", "legend", "finals", "fit"))
        where = f"figure {i + 1} ({title[:60]!r})"
        if not fit or fit not in title or "fit" not in title.lower():
            out.append(f"{where}: the title does not name its fit {fit!r}")
        if not _LEVEL.search(legend):
            out.append(f"{where}: the legend does not name the band's level")
        if not _NUMBER.search(finals):
            out.append(f"{where}: no final values")
        if fig["images"] != 1:
            out.append(f"{where}: {fig['images']} images")
    for cell in facts.param_cells:
        for token in _NUMBER.findall(cell):
            value = abs(float(token))
            if value > 1e100 or 0 < value < 1e-100:
                out.append(f"parameter table prints {token!r} ({cell.strip()!r})")
    return out
