"""Manifest CSV: round trip, incremental appends, a crash mid-line loses only that line."""
from __future__ import annotations

from dataset.manifest import ManifestRow, append_manifest, read_manifest, write_manifest


def _rows():
    return [ManifestRow("1/S1_a.jpg", "1", "S1", "/in/1/S1_a.jpg", "original", 42),
            ManifestRow("1/S1_a_r5f_abc.jpg", "1", "S1", "/in/1/S1_a.jpg", "rotate_flip", 42,
                        {"theta": 5.0, "flip": True, "zoom": 1.25}, quality=0.5),
            ManifestRow("2/x, with comma.png", "2", "S 2", "a.png;b.png", "ddim", None,
                        {"prompt": 'a "quoted" river'})]


def test_round_trip(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", _rows())
    assert read_manifest(path) == _rows()
    assert path.read_text().splitlines()[0] == "path,label,site_id,origin,generator,seed,params,quality"


def test_append_and_truncated_last_line(tmp_path):
    path = tmp_path / "manifest.csv"
    append_manifest(path, _rows()[:1])
    append_manifest(path, _rows()[1:])
    assert read_manifest(path) == _rows()
    with open(path, "a") as fh:
        fh.write("3/half_written.png,3,S")  # a crash in the middle of a row
    assert read_manifest(path) == _rows()


def test_append_after_a_torn_line_keeps_the_manifest_readable(tmp_path):
    path = tmp_path / "manifest.csv"
    append_manifest(path, _rows()[:1])
    with open(path, "a") as fh:
        fh.write("3/half_written.png,3,S")  # the crash
    append_manifest(path, _rows()[1:])        # the resumed run records its next image
    assert read_manifest(path) == _rows()
    torn_header = tmp_path / "torn_header.csv"
    torn_header.write_text("path,label,si")    # crashed while writing the header
    append_manifest(torn_header, _rows())
    assert read_manifest(torn_header) == _rows()
