import json
import subprocess
import sys

import webdataset as wds
from conftest import png_bomb_bytes

from multimodal.data.check import check_shards
from multimodal.data.sources import load_source
from multimodal.data.writer import write_shards


def good_png(caption_dir):
    return (caption_dir / "food" / "group2" / "item02.png").read_bytes()


def plant_faults(caption_dir, out):
    """Clean shards plus one shard per fault kind; returns {kind: (shard, key)} of what was planted."""
    write_shards(load_source(caption_dir), out, shard_size=8, progress=False)
    png = good_png(caption_dir)
    taken = wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False).__iter__().__next__()["__key__"]
    with wds.TarWriter(str(out / "zbad-000.tar")) as sink:
        sink.write({"__key__": "corrupt", "png": png[: len(png) // 2], "txt": "half an image"})
        sink.write({"__key__": "garbage", "jpg": b"not an image at all", "txt": "garbage"})
        sink.write({"__key__": "nocaption", "png": png})
        sink.write({"__key__": "emptycaption", "png": png, "txt": "   "})
        sink.write({"__key__": "bomb", "png": png_bomb_bytes(), "txt": "a bomb"})
        sink.write({"__key__": taken, "png": png, "txt": "same key as a clean shard"})
        sink.write({"__key__": "fine", "png": png, "txt": "fine"})
    whole = (out / "shard-000001.tar").read_bytes()
    (out / "shard-000001.tar").write_bytes(whole[: len(whole) // 2 + 100])  # truncated mid-member
    return {
        "corrupt_image": {("zbad-000.tar", "corrupt"), ("zbad-000.tar", "garbage")},
        "missing_caption": {("zbad-000.tar", "nocaption"), ("zbad-000.tar", "emptycaption")},
        "decompression_bomb": {("zbad-000.tar", "bomb")},
        "duplicate_key": {("zbad-000.tar", taken)},
        "truncated_tar": {("shard-000001.tar", None)},
        "count_mismatch": {("shard-000001.tar", None)},
    }


def test_check_finds_every_planted_fault(caption_dir, tmp_path):
    planted = plant_faults(caption_dir, tmp_path / "out")
    report = check_shards(tmp_path / "out", progress=False)
    assert not report.ok
    found: dict[str, set] = {}
    for p in report.problems:
        found.setdefault(p.kind, set()).add((p.shard, p.key if p.kind not in ("truncated_tar", "count_mismatch")
                                             else None))
    assert found == planted
    per_shard = {s.shard: (s.samples, s.ok) for s in report.shards}
    assert per_shard["zbad-000.tar"] == (7, 1)
    assert per_shard["shard-000000.tar"] == (8, 8)


def test_check_clean_shards_exit_zero_and_json(caption_dir, tmp_path):
    write_shards(load_source(caption_dir), tmp_path / "out", shard_size=8, progress=False)
    run = subprocess.run([sys.executable, "-m", "multimodal", "shards", "check", str(tmp_path / "out"),
                          "--format", "json", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["num_samples"] == 24 and report["problems"] == []


def test_check_cli_exits_nonzero_with_problems(caption_dir, tmp_path):
    plant_faults(caption_dir, tmp_path / "out")
    run = subprocess.run([sys.executable, "-m", "multimodal", "shards", "check", str(tmp_path / "out" / "*.tar"),
                          "--quiet"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "zbad-000.tar bomb: decompression_bomb" in run.stdout
    assert "shard-000001.tar -: truncated_tar" in run.stdout
