#!/usr/bin/env python3
"""Reads a drill report page with the standard library's HTML parser and the
SVG timeline with xml.etree, and prints what a reader would see, as JSON:
the tags used, anything that would run a script or fetch from the network,
the protocol table, and the timeline's bars, shading, marks and lines."""
import json
import re
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

SVG = "{http://www.w3.org/2000/svg}"


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.fetches, self.handlers = set(), [], []
        self.protocol, self.headings = {}, []
        self._cell, self._row, self._in_protocol, self._heading = None, [], False, None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(name)
            if name in ("src", "href", "xlink:href") or (value and re.search(r"url\((?!#)", value or "")):
                self.fetches.append(f"{tag} {name}={value}")
        if tag == "table" and ("class", "protocol") in attrs:
            self._in_protocol = True
        if tag in ("th", "td"):
            self._cell = ""
        if tag in ("h1", "h2"):
            self._heading = ""

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr":
            if self._in_protocol and len(self._row) == 2:
                self.protocol[self._row[0]] = self._row[1]
            self._row = []
        elif tag == "table":
            self._in_protocol = False
        elif tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._heading is not None:
            self._heading += data


def main(path):
    text = open(path, encoding="utf-8").read()
    page = Page()
    page.feed(text)
    page.close()
    svg_text = re.search(r"<svg.*?</svg>", text, re.S).group(0)
    svg = ET.fromstring(svg_text)  # raises on anything that is not well-formed XML
    rects = svg.findall(f"{SVG}rect")
    bars = [r for r in rects if r.get("class", "").startswith("bar-")]
    lines = {l.get("class"): float(l.get("x1")) for l in svg.findall(f"{SVG}line")}
    labels = [t.text for t in svg.findall(f"{SVG}text")]
    facts = {
        "doctype": text.lstrip().lower().startswith("<!doctype html>"),
        "tags": sorted(page.tags),
        "fetches": page.fetches,
        "handlers": page.handlers,
        "protocol": page.protocol,
        "headings": page.headings,
        "bars": [{"class": b.get("class"), "x": float(b.get("x")), "width": float(b.get("width")),
                  "title": b.find(f"{SVG}title").text} for b in bars],
        "waits": len([r for r in rects if r.get("class") == "wait"]),
        "retries": len([r for r in rects if r.get("class") == "retry"]),
        "confirmations": len(svg.findall(f"{SVG}path[@class='confirmation']")),
        "parts": [r.find(f"{SVG}title").text for r in rects if r.get("class") == "part"],
        "lines": lines,
        "labels": labels,
        "width": float(svg.get("width")),
    }
    json.dump(facts, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
