"""One self-contained HTML page: PNG images embedded as base64 ``data:`` URIs, tables inline,
links (relative) to the CSV/Markdown/LaTeX/SVG files written beside it."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1a1a1a;
 background:#fff;max-width:1400px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px} .meta{color:#555;font-size:13px}
.scroll{overflow-x:auto} table.data{border-collapse:collapse;font-size:12px;margin:6px 0}
table.data th,table.data td{border:1px solid #d0d0d0;padding:3px 6px;text-align:left;white-space:nowrap}
table.data th{background:#eef2f7} table.data th.group{text-align:center} table.data td.n{text-align:right;font-variant-numeric:tabular-nums}
table.data tbody tr:nth-child(even){background:#f8f8f8}
ul.notes{font-size:12px;color:#444;margin:4px 0 10px} img{max-width:100%;height:auto}
figure{margin:10px 0} figcaption{font-size:12px;color:#444} .links{font-size:12px}
details{margin:4px 0 10px} details summary{cursor:pointer;font-size:13px;color:#234}
.warn{background:#fff4e0;border:1px solid #f0c070;padding:6px 10px;font-size:13px}
"""


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _link_name(path: Path) -> str:
    """Text of a link to another form of a figure: ``viewer`` for an HTML page, else the suffix."""
    suffix = Path(path).suffix.lower()
    return "replay viewer" if suffix == ".html" else suffix[1:].upper()


@dataclass
class Page:
    """An HTML page built section by section (each method appends escaped markup)."""

    title: str
    base: Path
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str, level: int = 2, anchor: str = "") -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def raw(self, markup: str) -> None:
        """Markup built by trusted code (e.g. :func:`annosim.report.tables.to_html`)."""
        self.parts.append(f'<div class="scroll">{markup}</div>')

    def folded(self, title: str, markup: str) -> None:
        """Trusted markup folded away under ``title`` (an HTML ``<details>`` section)."""
        self.parts.append(f'<details><summary>{html.escape(title)}</summary><div class="scroll">{markup}</div>'
                          "</details>")

    def links(self, files: list[Path]) -> None:
        """Relative links to files written beside the page."""
        items = " | ".join(f'<a href="{html.escape(self._rel(p))}">{html.escape(Path(p).name)}</a>' for p in files)
        self.parts.append(f'<p class="links">Files: {items}</p>')

    def image(self, png: Path, caption: str = "", extra: list[Path] | None = None) -> None:
        """Embed a PNG (base64) with a caption and links to other formats of it."""
        cap = html.escape(caption)
        if extra:
            cap += " (" + ", ".join(f'<a href="{html.escape(self._rel(p))}">{html.escape(_link_name(p))}</a>'
                                    for p in extra) + ")"
        self.parts.append(f'<figure><img src="{png_data_uri(png)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{cap}</figcaption></figure>")

    def _rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.base.resolve()).as_posix()

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
                f"<body>\n<h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, path: Path) -> Path:
        Path(path).write_text(self.render(), encoding="utf-8")
        return Path(path)
