"""Self-contained HTML pages: images inlined as data URIs, one stylesheet, no scripts needed.

A page made here opens from a file:// URL on a machine without network, can be mailed as one
file, and shows the same thing in every browser.

Example:
    >>> html = render_page("Report", body_html, sections=[("counts", "Counts")])
    >>> write_page("out/report.html", html)
    >>> img_tag(png_data_uri("curves.png"), "training curves")
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import jinja2
from PIL import Image
from markupsafe import Markup
import numpy as np

from dataset.atomic import atomic_write_text

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d3557; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: .85; }
nav { padding: 8px 32px; background: #e8ecf2; font-size: 14px; }
nav a { margin-right: 14px; color: #1d3557; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
section { background: white; border-radius: 8px; padding: 12px 20px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { margin: 6px 0 10px 0; font-size: 20px; }
h3 { margin: 14px 0 6px 0; font-size: 16px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
th, td { border: 1px solid #d5dae1; padding: 3px 8px; text-align: right; }
th { background: #eef1f5; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
figure { display: inline-block; margin: 6px 12px 6px 0; vertical-align: top; }
figcaption { font-size: 12px; color: #555; }
.note { color: #555; font-size: 13px; }
.good { color: #1a7f37; } .bad { color: #b42318; } .neutral { color: #8a5a00; }
pre { background: #f3f4f6; padding: 8px; overflow-x: auto; font-size: 12px; }
"""

_PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body><header><h1>{{ title }}</h1>{% if subtitle %}<p>{{ subtitle }}</p>{% endif %}</header>
{% if sections %}<nav>{% for id, name in sections %}<a href="#{{ id }}">{{ name }}</a>{% endfor %}</nav>{% endif %}
<main>{{ body }}</main></body></html>
""", autoescape=True)


def png_data_uri(source: str | Path | bytes | np.ndarray) -> str:
    """A data: URI for a PNG file, PNG bytes, or an RGB/gray uint8 array."""
    if isinstance(source, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(source).save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = Path(source).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_data_uri(fig, dpi: int = 90) -> str:
    """A data: URI for a matplotlib figure (closed afterwards)."""
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def img_tag(uri: str, caption: str = "", width: int | None = None) -> str:
    """An <img> (inside a <figure> with a caption when one is given) as an HTML string,
    the caption escaped."""
    style = f' style="width:{int(width)}px"' if width else ""
    img = Markup('<img src="{}" alt="{}"{}>').format(uri, caption, Markup(style))
    if not caption:
        return str(img)
    return str(Markup("<figure>{}<figcaption>{}</figcaption></figure>").format(img, caption))


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
               digits: int = 3) -> str:
    """An HTML table (a string) of dict rows, floats rounded to `digits`, cells escaped."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{float(v):.{digits}f}"
        return "" if v is None else str(v)
    return _TABLE.render(columns=columns, rows=[[cell(r.get(c)) for c in columns] for r in rows])


_TABLE = jinja2.Template("<table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}"
                         "</tr></thead><tbody>{% for r in rows %}<tr>{% for v in r %}"
                         "<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>",
                         autoescape=True)


def render_page(title: str, body: str, subtitle: str = "",
                sections: Sequence[tuple[str, str]] = ()) -> str:
    """The whole page: header, a navigation bar of (id, name) sections, and `body`.

    `body` is trusted HTML (build it from the helpers here or an autoescaping template)."""
    return _PAGE.render(title=title, subtitle=subtitle, sections=list(sections),
                        body=Markup(body), style=Markup(STYLE))


def write_page(path: str | Path, html: str) -> Path:
    """Writes the page atomically (a reader never sees half a report)."""
    return atomic_write_text(Path(path), html)
