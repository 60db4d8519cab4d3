"""Scanning in_dir/<label>/...: extensions, nesting, site rules, and clear errors."""
from __future__ import annotations

import pytest

from conftest import make_dataset, write_image
from dataset.scan import DatasetError, scan_labelled_dir, site_from_name, validate_images


def test_any_extension_any_case_nested_and_hidden_skipped(tmp_path):
    root = tmp_path / "in"
    for i, name in enumerate(["S1_a.JPG", "S1_b.jpeg", "S2_c.Png", "sub/S2_d.bmp",
                              "sub/deeper/S3_e.tif", "S3_f.webp"]):
        write_image(root / "L" / name, seed=i)
    write_image(root / "L" / ".hidden" / "S9_x.png")
    (root / "L" / "readme.txt").write_text("notes")
    scan = scan_labelled_dir(root)
    assert scan.labels == ["L"]
    assert len(scan.images) == 6
    assert scan.counts() == {"L": {"S1": 2, "S2": 2, "S3": 2}}
    assert scan.skipped == [("L/readme.txt", "not an image file (by its extension)")]


def test_site_rules():
    assert site_from_name("S12_2024-01-01_cam.jpg") == "S12"
    assert site_from_name("nounderscore.png") == "nounderscore"


def test_site_regex_and_csv(tmp_path):
    root = make_dataset(tmp_path / "in", {"1": {"cam-01": 2, "cam-02": 1}})
    scan = scan_labelled_dir(root, site_regex=r"cam-(\d+)")
    assert scan.counts() == {"1": {"01": 2, "02": 1}}
    scan = scan_labelled_dir(root, site_regex=r"(?P<site>cam)-")
    assert scan.counts() == {"1": {"cam": 3}}
    csv = tmp_path / "sites.csv"
    csv.write_text("path,site_id\n1/cam-01_000.jpg,north\n1/cam-01_001.jpg,north\n"
                   f"{root / '1' / 'cam-02_000.jpg'},south\n")
    assert scan_labelled_dir(root, site_csv=csv).counts() == {"1": {"north": 2, "south": 1}}
    csv.write_text("path,site_id\n1/cam-01_000.jpg,north\n")
    with pytest.raises(DatasetError, match="no site_id for 2 file"):
        scan_labelled_dir(root, site_csv=csv)
    with pytest.raises(DatasetError, match="no site_id for 3 file"):
        scan_labelled_dir(root, site_regex=r"^river")
    with pytest.raises(DatasetError, match="not a valid regex"):
        scan_labelled_dir(root, site_regex=r"(")


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_labelled_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no label folders"):
        scan_labelled_dir(tmp_path / "empty")
    write_image(tmp_path / "flat" / "S1_a.jpg")
    with pytest.raises(DatasetError, match="holds 1 images directly"):
        scan_labelled_dir(tmp_path / "flat")
    root = make_dataset(tmp_path / "in", {"1": {"S1": 1}})
    (root / "2").mkdir()
    with pytest.raises(DatasetError, match="label '2' has no images"):
        scan_labelled_dir(root, labels=["2"])
    with pytest.raises(DatasetError, match="not found"):
        scan_labelled_dir(root, labels=["7"])
    scan = scan_labelled_dir(root)  # discovered empty label: listed, not fatal
    assert scan.labels == ["1"] and ("2/", "label folder without images") in scan.skipped


def test_validate_drops_corrupt_and_tiny_images_and_lists_them(tmp_path):
    root = make_dataset(tmp_path / "in", {"1": {"S1": 3}, "2": {"S1": 1}})
    (root / "1" / "S1_bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_image(root / "2" / "S2_tiny.png", size=(4, 4))
    scan = validate_images(scan_labelled_dir(root), min_size=8, workers=2, progress=False)
    assert scan.counts() == {"1": {"S1": 3}, "2": {"S1": 1}}
    reasons = dict(scan.skipped)
    assert "corrupt" in reasons["1/S1_bad.jpg"] or "not an image" in reasons["1/S1_bad.jpg"]
    assert "too small (4x4 px" in reasons["2/S2_tiny.png"]
    assert all(r.size == (24, 16) for r in scan.images)


def test_default_rule_error_names_the_rule(tmp_path):
    write_image(tmp_path / "in" / "1" / "_no_site.jpg")
    with pytest.raises(DatasetError, match="default site rule .* for 1 file"):
        scan_labelled_dir(tmp_path / "in")
