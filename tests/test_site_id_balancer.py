"""Stage 1 end to end on real image files: counts, provenance, determinism, resume, bad input."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_dataset, tree_hashes, write_image
from dataset.images import load_rgb
from dataset.manifest import read_manifest
from site_id_balancer import main

ROOT = Path(__file__).resolve().parents[1]


def run(in_dir, out_dir, *extra, workers: int = 1) -> int:
    return main(["--in_dir", str(in_dir), "--out_dir", str(out_dir), "--workers", str(workers),
                 *extra])


def site_counts(out_dir: Path, label: str) -> dict[str, int]:
    return dict(Counter(p.name.split("_")[0] for p in (out_dir / label).iterdir()))


def image_hashes(out_dir: Path) -> dict[str, str]:
    """Hashes of the images and the manifest (config.json names out_dir; the chart is a
    picture of the counts, compared through summary.txt)."""
    return {k: v for k, v in tree_hashes(out_dir).items()
            if k not in ("config.json", "balance_counts.png")}


def test_exact_counts_manifest_and_reports(small_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    before = tree_hashes(small_dataset)
    assert run(small_dataset, out, workers=2) == 0
    assert site_counts(out, "1") == {"S1": 6, "S2": 6, "S3": 6}
    assert site_counts(out, "2") == {"A": 3, "B": 3}
    rows = read_manifest(out / "manifest.csv")
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("[12]/*")}
    assert {r.path for r in rows} == on_disk
    assert Counter(r.generator for r in rows) == {"original": 15, "rotate_flip": 9}
    aug = next(r for r in rows if r.generator == "rotate_flip")
    assert set(aug.params) == {"theta", "flip", "zoom"} and aug.seed == 42
    assert aug.params["zoom"] > 1 and Path(aug.origin).exists()
    assert all(r.site_id == Path(r.path).name.split("_")[0] for r in rows)
    # originals are byte-identical copies; the input is untouched
    assert (out / "1" / "S1_000.jpg").read_bytes() == (small_dataset / "1" / "S1_000.jpg").read_bytes()
    assert tree_hashes(small_dataset) == before
    assert "label  site_id  before  added  after  target  shortfall" in (out / "summary.txt").read_text()
    with Image.open(out / "balance_counts.png") as chart:
        assert chart.format == "PNG" and chart.width > 300
    assert load_rgb(out / "1" / next(p for p in on_disk if "_r5_" in p).split("/")[1]).shape == (16, 24, 3)
    assert "wrote 24 image(s)" in capsys.readouterr().out


def test_shortfall_is_reported_per_site(small_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(small_dataset, out, "--multiplier", "1") == 0
    assert site_counts(out, "1") == {"S1": 6, "S2": 6, "S3": 3}
    text = capsys.readouterr().out
    assert "shortfall: label 1 site S3 reaches 3 of 6 (3 short" in text
    assert "shortfall: label 1 site S3" in (out / "summary.txt").read_text()


def test_same_seed_same_bytes_any_worker_count_other_seed_other_choice(tmp_path):
    data = make_dataset(tmp_path / "in", {"1": {"S1": 8, "S2": 5}})
    assert run(data, tmp_path / "a", "--seed", "7", workers=2) == 0
    assert run(data, tmp_path / "b", "--seed", "7", workers=1) == 0
    assert run(data, tmp_path / "c", "--seed", "8") == 0
    assert image_hashes(tmp_path / "a") == image_hashes(tmp_path / "b")
    files = lambda d: sorted(p.name for p in (d / "1").iterdir())
    assert files(tmp_path / "a") != files(tmp_path / "c")  # which 3 of 5 images get rotated


def test_resume_after_interruption_gives_the_same_result(small_dataset, tmp_path, capsys):
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    assert run(small_dataset, clean) == 0
    assert run(small_dataset, resumed) == 0
    # an interrupted run: some outputs and the manifest never got written
    for p in sorted((resumed / "1").glob("*_r*"))[:4]:
        p.unlink()
    (resumed / "manifest.csv").unlink()
    # a kill -9 in the middle of an atomic write leaves its temp file
    (resumed / "1" / ".tmp-0badc0de-S1_r1.png").write_bytes(b"half")
    capsys.readouterr()
    assert run(small_dataset, resumed) == 0
    assert list(resumed.rglob(".tmp-*")) == []
    assert "wrote 4 image(s), 20 already present" in capsys.readouterr().out
    assert image_hashes(resumed) == image_hashes(clean)


def test_a_run_killed_while_writing_its_config_resumes(small_dataset, tmp_path):
    """A kill -9 during the first write leaves only config.json's temp file: that folder is
    still this command's to finish, and any other file still makes it foreign."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert run(small_dataset, clean) == 0
    killed.mkdir()
    (killed / ".tmp-0badc0de-config.json").write_text('{"half')
    assert run(small_dataset, killed) == 0
    assert list(killed.rglob(".tmp-*")) == []
    assert image_hashes(killed) == image_hashes(clean)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / ".tmp-notes.txt").write_text("mine")
    assert run(small_dataset, foreign) == 2
    assert (foreign / ".tmp-notes.txt").read_text() == "mine"


def test_dry_run_writes_nothing(small_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--in_dir", str(small_dataset), "--out_dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "dry run: nothing written" in text and "[BalancerConfig]" in text
    assert "total: 15 images in, 9 augmentations planned, 24 out" in text


def test_bad_files_are_skipped_listed_and_nothing_lost(tmp_path, capsys):
    data = make_dataset(tmp_path / "in", {"1": {"S1": 4, "S2": 2}})
    (data / "1" / "S2_notes.txt").write_text("field notes")
    (data / "1" / "S2_fake.jpg").write_text("not a jpeg")
    good = data / "1" / "S1_000.jpg"
    (data / "1" / "S2_cut.jpg").write_bytes(good.read_bytes()[:200])
    write_image(data / "1" / "S3_tiny.png", size=(3, 3))
    before = tree_hashes(data)
    out = tmp_path / "out"
    assert run(data, out) == 0
    text = capsys.readouterr().out
    assert "skipped 4 file(s)" in text
    skipped = (out / "skipped.csv").read_text()
    for name, reason in (("S2_notes.txt", "not an image file"), ("S2_fake.jpg", "not an image"),
                         ("S2_cut.jpg", "truncated"), ("S3_tiny.png", "too small")):
        assert name in skipped and reason in skipped
    assert site_counts(out, "1") == {"S1": 4, "S2": 4}  # the tiny S3 image is not a site
    assert tree_hashes(data) == before


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no label folders"),
])
def test_unusable_input_folder_exits_2(tmp_path, capsys, setup, message):
    assert run(setup(tmp_path), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_label_without_images(tmp_path, capsys):
    data = make_dataset(tmp_path / "in", {"1": {"S1": 2}})
    (data / "2").mkdir()
    assert run(data, tmp_path / "o1", "--labels", "2") == 2
    assert "label '2' has no images" in capsys.readouterr().err
    assert run(data, tmp_path / "o2") == 0
    assert "2/: label folder without images" in capsys.readouterr().out
    write_image(data / "stray.png")
    assert run(data, tmp_path / "o3") == 0
    assert "stray.png: image at the dataset root, in no label folder" in capsys.readouterr().out


def test_out_dir_guards_never_touch_user_files(small_dataset, tmp_path, capsys):
    foreign = tmp_path / "mine"
    write_image(foreign / "precious.jpg")
    before = tree_hashes(foreign)
    assert run(small_dataset, foreign) == 2
    assert "not written by site_id_balancer.py" in capsys.readouterr().err
    assert tree_hashes(foreign) == before
    assert run(small_dataset, small_dataset / "1" / "out") == 2
    assert "inside --in_dir" in capsys.readouterr().err
    out = tmp_path / "out"
    assert run(small_dataset, out) == 0
    snapshot = tree_hashes(out)
    assert run(small_dataset, out, "--theta", "3") == 2
    assert "was made with theta=5.0, now 3.0" in capsys.readouterr().err
    assert tree_hashes(out) == snapshot


def test_hard_links_share_the_original(small_dataset, tmp_path):
    out = tmp_path / "out"
    assert run(small_dataset, out, "--link_originals") == 0
    src, dst = small_dataset / "1" / "S2_000.jpg", out / "1" / "S2_000.jpg"
    assert src.stat().st_ino == dst.stat().st_ino or src.read_bytes() == dst.read_bytes()


def test_command_line_entry_point(small_dataset, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "site_id_balancer.py"), "--in_dir",
                           str(small_dataset), "--out_dir", str(out), "--theta", "10",
                           "--multiplier", "2", "--fact", "1.4"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(out / "manifest.csv")
    zooms = {r.params["zoom"] for r in rows if r.generator == "rotate_flip"}
    assert zooms == {1.4}
    bad = subprocess.run([sys.executable, str(ROOT / "site_id_balancer.py"), "--in_dir", "x",
                          "--theta", "99"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--theta must be <= 45" in bad.stderr
