import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import make_image
from PIL import Image

from multimodal.data.images import DecompressionBombError, open_image
from multimodal.data.sources import load_source
from multimodal.data.writer import write_shards


def read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return samples


def read_all(out: Path) -> dict[str, dict[str, bytes]]:
    samples = {}
    for shard in sorted(out.glob("*.tar")):
        samples.update(read_tar(shard))
    return samples


def test_caption_folder_round_trip(caption_dir, tmp_path):
    items = load_source(caption_dir)
    report = write_shards(items, tmp_path / "out", shard_size=5, workers=2, progress=False)
    assert report.num_samples == 24 and len(report.shards) == 5 and not report.skipped
    samples = read_all(tmp_path / "out")
    assert len(samples) == 24
    src = caption_dir / "food" / "group0" / "item00.jpg"
    sample = samples["food_group0_item00"]
    assert sample["txt"].decode() == "A red apple number 0."  # first non-empty line only
    assert sample["jpg"] == src.read_bytes()  # unchanged bytes when no resize is asked
    meta = json.loads(sample["json"])
    assert meta["source"] == "food/group0/item00.jpg" and (meta["width"], meta["height"]) == (40, 32)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["num_samples"] == 24 and [s["count"] for s in index["shards"]] == [5, 5, 5, 5, 4]
    assert json.loads((tmp_path / "out" / "sizes.json").read_text())["shard-000004.tar"] == 4


def test_whole_caption_and_resize(caption_dir, tmp_path):
    make_image(caption_dir / "big.png", seed=7, size=(300, 120))
    (caption_dir / "big.txt").write_text("line one\n\nline two\n")
    items = load_source(caption_dir, whole_caption=True)
    write_shards(items, tmp_path / "out", shard_size=100, max_side=64, progress=False)
    sample = read_all(tmp_path / "out")["big"]
    assert sample["txt"].decode() == "line one line two"
    assert Image.open(__import__("io").BytesIO(sample["png"])).size == (64, 26)
    assert json.loads(sample["json"])["width"] == 300  # original size is kept in the metadata


def test_imagefolder_captions_and_labels(imagefolder_dir, tmp_path):
    items = load_source(imagefolder_dir, caption_template="a photo of a {}")
    write_shards(items, tmp_path / "out", progress=False)
    samples = read_all(tmp_path / "out")
    assert len(samples) == 15
    s = samples["ankle_boot_0"]
    assert s["txt"].decode() == "a photo of a ankle boot"
    assert json.loads(s["json"])["labels"] == ["ankle_boot"]


def test_csv_and_jsonl_sources(caption_dir, tmp_path):
    images = sorted(caption_dir.rglob("*.png"))[:4]
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("filepath,title,extra\n" + "".join(f"{p},caption {i},x{i}\n" for i, p in enumerate(images)))
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text("".join(json.dumps({"image": str(p.relative_to(tmp_path)), "text": f"c{i}", "label": "thing"})
                             + "\n" for i, p in enumerate(images)))
    r1 = write_shards(load_source(csv_path), tmp_path / "a", progress=False)
    r2 = write_shards(load_source(jsonl, label_col="label"), tmp_path / "b", progress=False)
    assert r1.num_samples == r2.num_samples == 4
    meta = json.loads(next(iter(read_all(tmp_path / "b").values()))["json"])
    assert meta["labels"] == ["thing"]
    with pytest.raises(ValueError, match="which column holds the caption"):
        bad = tmp_path / "bad.csv"
        bad.write_text("image,foo\na.png,b\n")
        load_source(bad)


def test_skips_are_reported_with_reasons(caption_dir, tmp_path):
    (caption_dir / "nocaption.png").write_bytes((caption_dir / "food/group2/item02.png").read_bytes())
    (caption_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (caption_dir / "broken.txt").write_text("a broken file")
    report = write_shards(load_source(caption_dir), tmp_path / "out", progress=False)
    assert report.skip_counts() == {"missing_caption": 1, "not_an_image": 1}
    lines = (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()
    assert {json.loads(line)["key"] for line in lines} == {"nocaption", "broken"}


def test_bomb_guard_reads_header_only(tmp_path):
    from conftest import png_bomb_bytes

    started = time.perf_counter()
    with pytest.raises(DecompressionBombError, match="2,500,000,000 pixels"):
        open_image(png_bomb_bytes(), max_pixels=10_000_000)
    assert time.perf_counter() - started < 1.0  # decoding 2.5 G pixels would take minutes and 7.5 GB


def test_resume_after_sigkill(caption_dir, tmp_path):
    """Kill a real writer process mid-run; no half shard is ever visible and the rerun completes it."""
    for i in range(24, 160):  # more, larger images so that the run lasts long enough to be killed
        make_image(caption_dir / f"extra{i}.png", seed=i, size=(256, 256))
        (caption_dir / f"extra{i}.txt").write_text(f"extra {i}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "multimodal", "shards", "write", str(caption_dir), "--out", str(out),
           "--shard-size", "4", "--workers", "1", "--max-side", "200", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 60
    while len(list(out.glob("*.tar"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(out.glob("*.tar"))
    assert 3 <= len(finished) < 40, "the writer should have been killed mid-run"
    for shard in finished:  # every visible shard is complete
        assert len(read_tar(shard)) == 4
    first_bytes = {p.name: p.read_bytes() for p in finished}

    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert not list(out.glob(".*.tmp"))
    for name, data in first_bytes.items():
        assert (out / name).read_bytes() == data  # finished shards were not rewritten
    fresh = tmp_path / "fresh"
    write_shards(load_source(caption_dir), fresh, shard_size=4, max_side=200, progress=False)
    assert read_all(out) == read_all(fresh)
    assert json.loads((out / "index.json").read_text())["num_samples"] == 160


def test_refuses_to_mix_different_sources(caption_dir, imagefolder_dir, tmp_path):
    write_shards(load_source(caption_dir), tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="different source"):
        write_shards(load_source(imagefolder_dir), tmp_path / "out", progress=False)
    write_shards(load_source(imagefolder_dir), tmp_path / "out", overwrite=True, progress=False)
    assert len(read_all(tmp_path / "out")) == 15


def test_truncated_header_is_a_clear_error():
    import io

    from multimodal.data.images import ImageError

    img = Image.new("P", (50, 50))
    img.putpalette([i % 256 for i in range(768)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    for cut in range(9, len(data) - 20, 5):  # every cut before the pixel data ends, palette included
        with pytest.raises(ImageError) as info:
            open_image(data[:cut])
        assert info.value.reason in ("corrupt", "not_an_image")
