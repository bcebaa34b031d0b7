"""The tagger, the CLI, index/search, eval and ONNX, on a tiny CLIP trained in the test to tell colours apart."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import COLOURS, colour_image, png_bomb_bytes, train_tiny_clip
from PIL import Image

from multimodal.data.images import DecompressionBombError, ImageError
from multimodal.data.sources import SourceItem
from multimodal.data.writer import write_shards
from multimodal.tagging import ZeroShotTagger
from multimodal.tagging.tagger import best_f1_threshold


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    (root / "photos" / "nested").mkdir(parents=True)
    items = []
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for i in range(10):
            path = colour_image(root / f"{name}{i}.png", rgb, seed=100 * c + i)
            items.append(SourceItem(f"{name}{i}", name, str(path), [name]))
        colour_image(root / "photos" / ("nested" if c % 2 else "") / f"{name}.png", rgb, seed=999 + c)
    write_shards(items, root / "shards", shard_size=20, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(colours):
    """A tiny scratch CLIP trained for real, here, until it names the colours."""
    return train_tiny_clip(colours / "shards", colours / "run", steps=120, batch_size=24)


@pytest.fixture(scope="module")
def tagger(trained):
    return ZeroShotTagger.from_pretrained(trained, templates=["{}"])


def test_tags_are_sorted_pairs_and_single_label_scores_sum_to_one(tagger, colours):
    result = tagger.tag(colours / "photos" / "red.png", list(COLOURS))
    assert [label for label, _ in result][0] == "red"
    assert all(a[1] >= b[1] for a, b in zip(result, result[1:]))
    assert abs(sum(score for _, score in result) - 1) < 1e-5
    many = tagger.tag(sorted((colours / "photos").rglob("*.png")), list(COLOURS), top_k=2)
    assert len(many) == 6 and all(len(tags) == 2 for tags in many)
    top1 = {p.stem: tags[0][0] for p, tags in zip(sorted((colours / "photos").rglob("*.png")), many)}
    assert sum(top1[c] == c for c in COLOURS) >= 5, top1


def test_pil_and_tensor_inputs(tagger, colours):
    path = colours / "photos" / "blue.png"
    image = Image.open(path)
    from_pil = tagger.tag(image, list(COLOURS))
    assert from_pil == tagger.tag(path, list(COLOURS))
    raw = torch.from_numpy(np.array(image.convert("RGB")))
    assert tagger.tag(raw, list(COLOURS))[0][0] == from_pil[0][0]
    pre = tagger.model.preprocess(image.convert("RGB"))
    assert tagger.tag(pre, list(COLOURS))[0] == pytest.approx(from_pil[0])
    with pytest.raises(ImageError, match="shape"):
        tagger.tag(torch.zeros(3, 5, 5), ["red"])


def test_threshold_and_top_k(tagger, colours):
    tags = tagger.tag(colours / "photos" / "red.png", list(COLOURS), threshold=0.05)
    assert tags and all(score >= 0.05 for _, score in tags)
    with pytest.raises(ValueError, match="top_k"):
        tagger.tag(colours / "photos" / "red.png", ["red"], top_k=0)


def test_label_embeddings_are_computed_once(trained, colours, tmp_path):
    t = ZeroShotTagger.from_pretrained(trained, cache_dir=tmp_path / "cache")
    calls = []
    original = t.model.encode_text
    t.model.encode_text = lambda tokens, **kw: calls.append(len(tokens)) or original(tokens, **kw)
    images = sorted((colours / "photos").rglob("*.png"))
    for _ in range(5):
        t.tag(images, list(COLOURS))
    assert len(calls) == 1 and calls[0] == len(COLOURS) * len(t.templates)  # one batch, on the first call only
    t.tag(images, [*COLOURS, "purple"])
    assert len(calls) == 2 and calls[1] == len(t.templates)  # only the new label
    fresh = ZeroShotTagger.from_pretrained(trained, cache_dir=tmp_path / "cache")
    fresh.model.encode_text = lambda *a, **k: pytest.fail("the disk cache should have served these labels")
    assert fresh.tag(images[0], [*COLOURS, "purple"])[0][0] == t.tag(images[0], [*COLOURS, "purple"])[0][0]


def test_thousands_of_labels_are_encoded_in_batches_with_a_progress_bar(trained, capsys):
    t = ZeroShotTagger.from_pretrained(trained)
    labels = [f"{name} number {i}" for i in range(160) for name in ("red", "a very dark green")]  # 320, mixed length
    sizes = []
    original = t.model.encode_text
    t.model.encode_text = lambda tokens, **kw: sizes.append(len(tokens)) or original(tokens, **kw)
    batched = t.label_embeddings(labels)
    n_prompts = len(labels) * len(t.templates)
    assert sum(sizes) == n_prompts and len(sizes) == -(-n_prompts // 256) and max(sizes) <= 256
    assert "embed texts" in capsys.readouterr().err  # above 300 labels a bar shows the batches
    one_by_one = ZeroShotTagger.from_pretrained(trained).label_embeddings(labels[-3:])
    assert torch.allclose(batched[-3:], one_by_one, atol=1e-5)  # sorting and cutting padding change nothing


def test_calibrated_multi_label_thresholds_round_trip(tagger, colours, tmp_path):
    images = [colours / f"{c}{i}.png" for c in COLOURS for i in range(3)]
    truth = [[c] for c in COLOURS for _ in range(3)]
    thresholds = tagger.calibrate(images, truth)
    assert set(thresholds) == set(COLOURS)
    tags = tagger.tag(next((colours / "photos").rglob("green.png")), list(COLOURS), mode="multi")
    assert [label for label, _ in tags] == ["green"] and tags[0][1] >= 0.5
    saved = tagger.save_pretrained(tmp_path / "tagger")
    again = ZeroShotTagger.from_pretrained(saved)
    assert again.thresholds == pytest.approx(tagger.thresholds) and again.templates == tagger.templates
    assert best_f1_threshold(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 1, 0, 0]).bool()) == \
        pytest.approx(0.55)


def test_multi_label_without_calibration_warns_once_and_a_default_calibration_silences_it(trained, colours,
                                                                                          tmp_path):
    fresh = ZeroShotTagger.from_pretrained(trained)
    image = colours / "photos" / "red.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.tag(image, list(COLOURS), mode="multi")
        fresh.tag(image, list(COLOURS), mode="multi")
    assert len([w for w in caught if "calibrat" in str(w.message)]) == 1
    run = cli("tag", str(image), "--labels", ",".join(COLOURS), "--multi-label", "--model", str(trained))
    warned = [line for line in run.stderr.splitlines() if "warning" in line]
    assert run.returncode == 0 and len(warned) == 1 and "warnings.warn" not in run.stderr, run.stderr
    images = [colours / f"{c}{i}.png" for c in COLOURS for i in range(3)]
    assert fresh.calibrate(images, [[c] for c in COLOURS for _ in range(3)], per_label=False) == {}
    saved = ZeroShotTagger.from_pretrained(fresh.save_pretrained(tmp_path / "calibrated"))
    assert saved.default_threshold == pytest.approx(fresh.default_threshold) and not saved.thresholds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tags = saved.tag(image, list(COLOURS), mode="multi")
    assert not [w for w in caught if "calibrat" in str(w.message)] and tags[0][0] == "red"


def test_bad_inputs_get_clear_errors(tagger, colours, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes((colours / "red0.png").read_bytes()[:80])
    with pytest.raises(ImageError, match="broken.png"):
        tagger.tag(broken, ["red"])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb_bytes())
    with pytest.raises(DecompressionBombError, match="bomb.png"):
        tagger.tag(bomb, ["red"])
    with pytest.raises(ImageError, match="no such image"):
        tagger.tag(tmp_path / "missing.png", ["red"])
    with pytest.raises(ValueError, match="empty"):
        tagger.tag(colours / "red0.png", [])
    with pytest.raises(ValueError, match=r"duplicate labels: \['red'\]"):
        tagger.tag(colours / "red0.png", ["red", "blue", "red"])
    with pytest.raises(ValueError, match="too long.*context of 32 tokens"):
        tagger.tag(colours / "red0.png", ["red", "very " * 60 + "long"])
    for top_k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="top_k"):
            tagger.tag(colours / "red0.png", ["red", "blue"], top_k=top_k)
    for threshold in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            tagger.tag(colours / "red0.png", ["red", "blue"], threshold=threshold)


def test_a_folder_is_tagged_image_by_image(tagger, colours):
    """The API walks a folder as the CLI does, and says which result belongs to which file."""
    tags = tagger.tag(colours / "photos", ["red", "green", "blue"], top_k=1)
    assert sorted(tags) == sorted(str(p) for p in (colours / "photos").rglob("*.png"))
    assert all(len(t) == 1 for t in tags.values())
    assert tags[str(colours / "photos" / "red.png")][0][0] == "red"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "multimodal", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_csv_table_and_a_corrupt_file(trained, colours, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in (colours / "photos").rglob("*.png"):
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "sub").mkdir()
    (photos / "sub" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    run = cli("tag", str(photos), "--labels", ",".join(COLOURS), "--model", str(trained), "--format", "json",
              "--top-k", "3")
    assert run.returncode == 1 and "corrupt.png" in run.stderr  # reported, skipped, and the rest still tagged
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert set(row) == {"image", "tags"} and len(row["tags"]) == 3
        assert all(set(t) == {"label", "score"} and isinstance(t["score"], float) for t in row["tags"])
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# colours\n" + "\n".join(COLOURS) + "\n")
    csv_run = cli("tag", str(photos / "red.png"), "--labels-file", str(labels_file), "--model", str(trained),
                  "--format", "csv")
    assert csv_run.returncode == 0 and csv_run.stdout.splitlines()[0] == "image,label,score"
    assert len(csv_run.stdout.splitlines()) == 1 + len(COLOURS)
    table = cli("tag", str(photos / "red.png"), "--labels", "red,blue", "--model", str(trained))
    assert table.returncode == 0 and re.search(r"red\.png +red [01]\.\d{3} +blue [01]\.\d{3}", table.stdout)


def test_cli_keeps_label_embeddings_in_the_user_cache(trained, colours, tmp_path):
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    image = str(colours / "photos" / "red.png")

    def tag(*extra):
        done = subprocess.run([sys.executable, "-m", "multimodal", "tag", image, "--labels", "red,blue,teal",
                               "--model", str(trained), "--format", "json", *extra], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    uncached = tag("--no-cache")
    assert not (tmp_path / "xdg").exists()
    first, second = tag(), tag()  # the second reads the three labels from the cache
    assert len(list((tmp_path / "xdg" / "multimodal" / "labels").rglob("*.npy"))) == 3
    assert uncached == first == second


def test_an_unwritable_label_cache_warns_and_tagging_goes_on(tagger, tmp_path):
    from multimodal.tagging.labels import LabelCache

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = LabelCache(tagger.model_key, tagger.templates, blocker / "cache")
    with pytest.warns(UserWarning, match="label cache disabled"):
        emb = cache.get_many(["red", "blue"], lambda labels: torch.ones(len(labels), 4))
    assert emb.shape == (2, 4) and cache.directory is None


def test_index_and_search_round_trip(trained, colours, tmp_path):
    run = cli("index", str(colours / "photos"), "--out", str(tmp_path / "idx"), "--model", str(trained))
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert len(manifest["files"]) == 6 and np.load(tmp_path / "idx" / "embeddings.npy").shape[0] == 6
    found = cli("search", str(tmp_path / "idx"), "yellow", "--top-k", "2", "--format", "json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and Path(hits[0]["image"]).name == "yellow.png"


def test_eval_cli_zeroshot_and_retrieval(trained, colours, tmp_path):
    out = tmp_path / "zs.json"
    run = cli("eval", "zeroshot", "--model", str(trained), "--data", f"colours={colours / 'shards'}",
              "--template", "{}", "--out", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())["results"]["colours"]
    assert result["num_classes"] == 6 and result["top1"] > 0.8 and set(result["per_class_recall"]) == set(COLOURS)
    hits = result["top1_hits"]  # one 0/1 per image, by key, for paired comparisons of two models
    assert len(hits) == result["num_samples"] and sum(hits.values()) == round(result["top1"] * len(hits))
    assert "top1" in run.stdout
    ret = cli("eval", "retrieval", "--model", str(trained), "--data", str(colours / "shards"))
    assert ret.returncode == 0 and "image_to_text_R@1" in ret.stdout


def test_imagefolder_evaluation_keys_every_image_once(trained, tmp_path):
    """Two files of one stem in one class (red/a.png, red/a.jpg) are two samples, each with its own `top1_hits`
    key: one key for both would drop an image from every paired comparison."""
    from multimodal.evaluation.zeroshot import zeroshot_metrics
    from multimodal.models import CLIPModel

    root = tmp_path / "set"
    for name, ext in (("red", "png"), ("red", "jpg"), ("blue", "png")):
        (root / name).mkdir(parents=True, exist_ok=True)
        colour_image(root / name / f"a.{ext}", COLOURS[name], seed=len(ext))
    model = CLIPModel.from_pretrained(trained)
    result = zeroshot_metrics(model, root, templates=["{}"])
    assert result["num_samples"] == 3 and len(result["top1_hits"]) == 3
    # the same folder by another path (a report from another working directory) has the same keys
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    other = zeroshot_metrics(model, tmp_path / "link", templates=["{}"])
    assert set(other["top1_hits"]) == set(result["top1_hits"])


def test_onnx_export_parity_and_backend(trained, colours, tmp_path):
    run = cli("export", "onnx", str(trained), "--out", str(tmp_path / "onnx"))
    assert run.returncode == 0, run.stderr
    parity = json.loads((tmp_path / "onnx" / "export.json").read_text())["parity_min_cosine"]
    assert parity["image"] >= 0.999 and parity["text"] >= 0.999
    torch_tagger = ZeroShotTagger.from_pretrained(trained)
    onnx_tagger = ZeroShotTagger.from_pretrained(trained, backend="onnx", onnx_dir=tmp_path / "onnx")
    images = sorted((colours / "photos").rglob("*.png"))
    for a, b in zip(torch_tagger.tag(images, list(COLOURS)), onnx_tagger.tag(images, list(COLOURS))):
        assert [x[0] for x in a] == [x[0] for x in b]
        assert max(abs(x[1] - y[1]) for x, y in zip(a, b)) < 1e-3


def test_bf16_path_agrees_with_fp32(trained, colours, monkeypatch):
    import multimodal.tagging.tagger as tagger_module

    monkeypatch.setattr(tagger_module, "bf16_is_fast", lambda device: True)  # run the bf16 path on any CPU
    images = sorted((colours / "photos").rglob("*.png"))
    fp32 = ZeroShotTagger.from_pretrained(trained).tag(images, list(COLOURS))
    bf16_tagger = ZeroShotTagger.from_pretrained(trained, bf16=True)
    assert bf16_tagger._visual_bf16 is not None
    bf16 = bf16_tagger.tag(images, list(COLOURS))
    assert [t[0][0] for t in fp32] == [t[0][0] for t in bf16]
    assert max(abs(a[1] - b[1]) for x, y in zip(fp32, bf16) for a, b in zip(x, y)) < 0.05


def test_bf16_falls_back_to_fp32_where_the_cpu_emulates_it(trained, capsys):
    import multimodal.precision

    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has native bf16 kernels")
    multimodal.precision.bf16_is_fast.warned = False
    tagger = ZeroShotTagger.from_pretrained(trained, bf16=True)
    assert not tagger.bf16 and tagger._visual_bf16 is None
    assert "no bf16 kernels" in capsys.readouterr().err
