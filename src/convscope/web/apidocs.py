"""``/docs``: the OpenAPI description rendered as one HTML page, with no script and nothing
fetched from elsewhere (FastAPI's default Swagger UI loads its code from a CDN)."""

from __future__ import annotations

import html
import json
from typing import Any


def _schema_text(schema: dict[str, Any], components: dict[str, Any]) -> str:
    """A request body's fields, one per line: ``name: type = default — description``."""
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    props = schema.get("properties")
    if not props:
        return json.dumps(schema)
    lines = []
    for name, prop in props.items():
        kind = prop.get("type") or prop.get("$ref", "").rsplit("/", 1)[-1] or " | ".join(
            p.get("type", p.get("$ref", "?").rsplit("/", 1)[-1]) for p in prop.get("anyOf", []))
        default = f" = {json.dumps(prop['default'])}" if "default" in prop else ""
        info = f" — {prop['description']}" if prop.get("description") else ""
        lines.append(f"{name}: {kind}{default}{info}")
    return "\n".join(lines)


def render(spec: dict[str, Any]) -> str:
    """The HTML reference of an OpenAPI ``spec`` (``app.openapi()``)."""
    components = spec.get("components", {}).get("schemas", {})
    parts = [f"<h1>{html.escape(spec['info']['title'])} API</h1>",
             "<p>Every answer is JSON; errors are <code>{\"error\", \"message\", \"field\"}</code> with a 4xx status. "
             "The machine-readable description is <a href=\"/openapi.json\">/openapi.json</a>.</p>"]
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<pre class=\"doc\">{html.escape(op['description'])}</pre>")
            params = [f"{p['name']} ({p['in']}){' — ' + p['description'] if p.get('description') else ''}"
                      for p in op.get("parameters", [])]
            if params:
                parts.append("<h3>Parameters</h3><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in params)
                             + "</ul>")
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                text = _schema_text(content.get("schema", {}), components)
                parts.append(f"<h3>Body ({html.escape(media)})</h3><pre>{html.escape(text)}</pre>")
            parts.append("</section>")
    style = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}"
             "pre{background:#f3f3f3;padding:.5rem;white-space:pre-wrap}section{border-top:1px solid #ccc}")
    # no icon, as on the page: the browser then asks for no /favicon.ico (a 404 in the console)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>convscope API</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{style}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>")
