"""reporting/: self-contained pages, and the headless-Chromium loader that checks them
(it must catch what a person would see as broken, or the report tests prove nothing)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from reporting.browser import find_chromium, load_page
from reporting.html import html_table, img_tag, png_data_uri, render_page, write_page


@pytest.fixture(autouse=True)
def need_chromium():
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (make test installs Debian's chromium)")
        pytest.skip("no Chromium here: apt-get install chromium")


def test_a_clean_page_loads_without_errors_and_shows_its_content(tmp_path):
    red = np.zeros((10, 30, 3), np.uint8)
    red[..., 0] = 255
    body = ('<section id="s"><h2>Numbers</h2>' +
            html_table([{"name": "<b>bold?</b>", "value": 0.123456}]) +
            img_tag(png_data_uri(red), "a red strip") + "</section>")
    page = write_page(tmp_path / "page.html", render_page("Title", body, "sub", [("s", "N")]))
    result = load_page(page, screenshot=tmp_path / "shot.png", evaluate={
        "cells": "[...document.querySelectorAll('td')].map(e => e.textContent)",
        "size": "[document.images[0].naturalWidth, document.images[0].naturalHeight]"})
    assert result.errors == [] and result.external_requests == []
    assert result.values["cells"] == ["<b>bold?</b>", "0.123"]      # escaped, rounded
    assert result.values["size"] == [30, 10]
    shot = np.asarray(Image.open(result.screenshot).convert("RGB")).astype(int)
    reds = (shot[..., 0] > 200) & (shot[..., 1] < 60) & (shot[..., 2] < 60)
    assert reds.sum() >= 250                                        # the image is on screen


def test_errors_missing_files_and_network_use_are_reported(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><h2>x</h2><img src='missing.png'>"
                    "<img src='http://example.invalid/a.png'>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    result = load_page(page)
    text = "\n".join(result.errors)
    assert "console.error: boom" in text
    assert "undefinedFunction" in text
    assert "missing.png" in text
    assert result.external_requests == ["http://example.invalid/a.png"]
