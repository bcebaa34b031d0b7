import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image

from multimodal.data.images import DecompressionBombError, open_image
from multimodal.data.sources import load_source
from multimodal.data.writer import encode_image, write_shards
from multimodal.errors import UsageError


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


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, read from /proc (children of all its threads, recursively)."""
    found: set[int] = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(c) for c in children.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found |= {kid, *_descendants(kid)}
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has finished; only its exit status is left to reap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_main_process_takes_its_workers_down(caption_dir, tmp_path):
    """`kill -9` of the main PID only: the pool workers must not live on holding the lock; the rerun finishes."""
    for i in range(24, 200):
        make_image(caption_dir / f"extra{i}.png", seed=i, size=(256, 256))
        (caption_dir / f"extra{i}.txt").write_text(f"extra {i}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "multimodal", "shards", "write", str(caption_dir), "--out", str(out),
           "--shard-size", "4", "--workers", "2", "--max-side", "200", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        workers: set[int] = set()
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and (len(workers) < 2 or not list(out.glob("*.tar"))):
            workers |= _descendants(proc.pid)
            time.sleep(0.01)
        assert proc.poll() is None and len(workers) >= 2, "the writer should have been killed mid-run"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while any(_running(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)], "workers outlived their killed parent"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever this test started and is still there
        except ProcessLookupError:
            pass
    assert len(list(out.glob("*.tar"))) < 50, "the writer finished before it was killed"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    keys = Counter(key for shard in out.glob("*.tar") for key in read_tar(shard))
    expected = {item.key for item in load_source(caption_dir)}
    assert set(keys) == expected and set(keys.values()) == {1}
    assert json.loads((out / "index.json").read_text())["num_samples"] == len(expected) == 200


def _lock_holder(lock: Path) -> subprocess.Popen:
    """Another process holding the folder's flock, as an orphaned worker of a killed writer would."""
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print(1, flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"
    return holder


def test_lock_names_a_live_writer_and_takes_over_from_a_dead_one(caption_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = _lock_holder(out / ".lock")
    try:
        (out / ".lock").write_text(f"{holder.pid}\n")  # the recorded writer is alive: refuse, and say who it is
        with pytest.raises(UsageError, match=f"another `shards write` .*pid {holder.pid}"):
            write_shards(load_source(caption_dir), out, progress=False)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        (out / ".lock").write_text(f"{int(dead.stdout)}\n")  # the recorded writer is gone: its lock is stale
        report = write_shards(load_source(caption_dir), out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert report.num_samples == 24 and len(read_all(out)) == 24
    assert (out / ".lock").read_text().split()[0] == str(os.getpid())


def test_csv_row_with_more_fields_than_the_header_is_skipped(caption_dir, tmp_path):
    images = sorted(caption_dir.rglob("*.png"))[:3]
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(f"image,caption\n{images[0]},first\n\n{images[1]},extra,fields,here\n{images[2]},third\n")
    report = write_shards(load_source(csv_path), tmp_path / "out", progress=False)
    assert report.num_samples == 2
    assert sorted(s["txt"].decode() for s in read_all(tmp_path / "out").values()) == ["first", "third"]
    (skip,) = [json.loads(line) for line in (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()]
    assert skip["reason"] == "bad_row" and skip["line"] == 4
    assert f"{csv_path}:4:" in skip["message"] and "4 fields" in skip["message"]
    assert report.skip_counts() == {"bad_row": 1}


def test_rerun_refuses_changed_captions_images_labels_or_options(caption_dir, tmp_path):
    out = tmp_path / "out"
    write_shards(load_source(caption_dir), out, shard_size=5, progress=False)
    assert write_shards(load_source(caption_dir), out, shard_size=5, progress=False).resumed == 5

    (caption_dir / "food/group0/item00.txt").write_text("An edited caption.\n")
    with pytest.raises(UsageError, match="different source or settings.*caption"):
        write_shards(load_source(caption_dir), out, shard_size=5, progress=False)
    write_shards(load_source(caption_dir), out, shard_size=5, overwrite=True, progress=False)
    assert read_all(out)["food_group0_item00"]["txt"] == b"An edited caption."

    with pytest.raises(UsageError, match="different source or settings.*max-pixels"):
        write_shards(load_source(caption_dir), out, shard_size=5, max_pixels=1000, progress=False)
    items = load_source(caption_dir)
    items[3].labels = ["new label"]
    with pytest.raises(UsageError, match="different source or settings.*label"):
        write_shards(items, out, shard_size=5, progress=False)
    make_image(caption_dir / "food/group0/item00.jpg", seed=99, size=(41, 32))  # same name, other pixels
    with pytest.raises(UsageError, match="different source or settings.*image"):
        write_shards(load_source(caption_dir), out, shard_size=5, progress=False)
    assert read_all(out)["food_group0_item00"]["jpg"] != (caption_dir / "food/group0/item00.jpg").read_bytes()


def test_broken_symlinks_are_reported(caption_dir, tmp_path):
    (caption_dir / "dangling.png").symlink_to(caption_dir / "nowhere.png")
    (caption_dir / "dangling.txt").write_text("a dangling link")
    (caption_dir / "loop.png").symlink_to(caption_dir / "loop.png")
    (caption_dir / "loop.txt").write_text("a looping link")
    report = write_shards(load_source(caption_dir), tmp_path / "out", progress=False)
    assert report.num_samples == 24
    skips = {s["key"]: s for s in report.skipped}
    assert skips.keys() == {"dangling", "loop"} and {s["reason"] for s in skips.values()} == {"broken_symlink"}
    assert "nowhere.png" in skips["dangling"]["message"] and "loop" in skips["loop"]["message"]


def test_empty_image_path_is_reported_with_its_line(caption_dir, tmp_path):
    image = next(caption_dir.rglob("*.png"))
    for name, text in [("list.csv", f"image,caption\n{image},fine\n,no image here\n"),
                       ("list.jsonl", json.dumps({"image": str(image), "caption": "fine"}) + "\n"
                        + json.dumps({"image": "", "caption": "no image here"}) + "\n")]:
        src = tmp_path / name
        src.write_text(text)
        report = write_shards(load_source(src), tmp_path / name.replace(".", "_"), progress=False)
        (skip,) = report.skipped
        assert report.num_samples == 1 and skip["line"] == 3 - name.endswith("jsonl")
        assert skip["message"] == f"{src}:{skip['line']}: empty image path"


def test_jsonl_row_that_is_not_an_object(caption_dir, tmp_path):
    image = next(caption_dir.rglob("*.png"))
    src = tmp_path / "list.jsonl"
    src.write_text(json.dumps({"image": str(image), "caption": "fine"}) + "\n" + json.dumps([str(image), "x"]) + "\n"
                   + '"just a string"\n')
    report = write_shards(load_source(src), tmp_path / "out", progress=False)
    assert report.num_samples == 1 and report.skip_counts() == {"bad_row": 2}
    assert [(s["line"], s["message"]) for s in report.skipped] == [
        (2, f"{src}:2: a JSON array, not an object"), (3, f"{src}:3: a JSON string, not an object")]
    src.write_text(json.dumps([[str(image), "x"], [str(image), "y"]]) + "\n")  # one JSON array, not JSONL
    with pytest.raises(UsageError, match=f"^{src}:1: a JSON array, not an object"):
        load_source(src)


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_a_png_colour_key_is_transparency_composited_on_white(tmp_path, mode):
    """tRNS in an RGB or grey PNG marks one colour transparent (Tux Paint's hatched chick has a black key): it must
    come out white, as an alpha channel does, not as the key's colour."""
    img = Image.new("RGB", (8, 8), (0, 0, 1))
    img.paste((200, 30, 30), (2, 2, 6, 6))
    img = img.convert(mode) if mode != "P" else img.quantize(2)
    key = img.getpixel((0, 0))
    img.save(tmp_path / "keyed.png", transparency=key)
    out = open_image(tmp_path / "keyed.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((4, 4)) != (255, 255, 255)
    # downscaled by the writer: the key becomes alpha first, so no dark key colour bleeds into the edges
    big = img.resize((64, 64), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.png", transparency=key)
    ext, data, _ = encode_image((tmp_path / "big.png").read_bytes(), max_side=16, max_pixels=None)
    darkest_opaque = np.asarray(out).astype(int).sum(-1).min()  # the square's colour: white is brighter
    assert ext == "png" and np.asarray(open_image(data)).astype(int).sum(-1).min() >= darkest_opaque - 6
