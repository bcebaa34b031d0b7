"""Few-shot tagging (Tip-Adapter examples) on a tiny CLIP trained here on four colours only: zero-shot cannot
name the two colours it never saw, a few examples of them can, and the four others keep their zero-shot scores."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import COLOURS, colour_image, train_tiny_clip

from multimodal.data.sources import SourceItem
from multimodal.data.writer import write_shards
from multimodal.errors import MissingError, UsageError
from multimodal.tagging import ZeroShotTagger

SEEN = {name: COLOURS[name] for name in ("red", "green", "blue", "yellow")}
UNSEEN = {name: COLOURS[name] for name in ("black", "white")}  # never in the training captions
LABELS = list(COLOURS)



@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """train/ (seen colours, with captions), examples/<colour>/ (3 each), test/<colour>/ (6 each, held out)."""
    root = tmp_path_factory.mktemp("fewshot")
    items = []
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for split, count in (("train", 10), ("examples", 3), ("test", 6)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                path = colour_image(root / split / name / f"{i}.png", rgb, seed=1000 * c + 100 * len(split) + i)
                if split == "train" and name in SEEN:
                    items.append(SourceItem(f"{name}{i}", name, str(path), [name]))
    write_shards(items, root / "shards", shard_size=20, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(colours):
    """A tiny scratch CLIP trained, here, to name the four seen colours."""
    return train_tiny_clip(colours / "shards", colours / "run", steps=80, batch_size=20, threads=1)


@pytest.fixture
def tagger(trained):
    return ZeroShotTagger.from_pretrained(trained, templates=["{}"])


def held_out(colours, names):
    files = [p for name in names for p in sorted((colours / "test" / name).glob("*.png"))]
    return files, torch.tensor([LABELS.index(p.parent.name) for p in files])


def top1(tagger, files, truth) -> float:
    feats, _, _ = tagger.encode_images(files)
    return float((tagger.scores(feats, LABELS).argmax(1) == truth).float().mean())


@pytest.mark.filterwarnings("ignore:this model has no calibrated")
def test_examples_teach_unseen_labels_and_leave_labels_without_examples_alone(tagger, colours):
    unseen, unseen_truth = held_out(colours, UNSEEN)
    seen, seen_truth = held_out(colours, SEEN)
    zero_unseen, zero_seen = top1(tagger, unseen, unseen_truth), top1(tagger, seen, seen_truth)
    feats, _, _ = tagger.encode_images(seen)
    before = tagger.scores(feats, LABELS)
    report = tagger.add_examples({name: sorted((colours / "examples" / name).glob("*.png")) for name in UNSEEN})
    assert report.added == {"black": 3, "white": 3} and not report.skipped
    assert zero_unseen <= 0.5 and top1(tagger, unseen, unseen_truth) == 1.0, zero_unseen
    assert zero_seen >= 0.9 and top1(tagger, seen, seen_truth) >= zero_seen
    after = tagger.scores(feats, LABELS)  # labels without examples keep their zero-shot logits, so their ratios
    seen_cols = [LABELS.index(name) for name in SEEN]
    ratio = lambda s: s[:, seen_cols] / s[:, seen_cols].sum(1, keepdim=True)  # noqa: E731
    assert torch.allclose(ratio(after), ratio(before), atol=1e-5)
    assert (after[:, seen_cols].sum(1) >= before[:, seen_cols].sum(1) - 1e-5).all()  # unlike examples: no gain
    multi = tagger.tag(colours / "test" / "black" / "0.png", LABELS, mode="multi", threshold=0.0)
    assert multi[0][0] == "black"


def test_examples_folder_save_and_load_round_trip(trained, colours, tmp_path):
    tagger = ZeroShotTagger.from_pretrained(trained, templates=["{}"], examples=colours / "examples")
    assert tagger.labels is None and sorted(tagger.examples.labels) == sorted(COLOURS)  # one folder per label
    files, truth = held_out(colours, COLOURS)
    assert top1(tagger, files, truth) == 1.0
    saved = tagger.save_pretrained(tmp_path / "fewshot-tagger")
    state = json.loads((saved / "tagger.json").read_text())
    assert (saved / "examples.safetensors").is_file() and sorted(state["examples"]["labels"]) == sorted(COLOURS)
    again = ZeroShotTagger.from_pretrained(saved)
    assert {k: len(v) for k, v in again.examples.features.items()} == {name: 3 for name in COLOURS}
    feats, _, _ = tagger.encode_images(files)
    assert torch.allclose(again.scores(feats, LABELS), tagger.scores(feats, LABELS), atol=1e-6)
    assert again.tag(files[0])[0][0] == files[0].parent.name  # the saved label list is the default
    again.clear_examples()
    assert top1(again, *held_out(colours, UNSEEN)) <= 0.5


def test_a_corrupt_example_is_skipped_and_reported(tagger, colours, tmp_path):
    folder = tmp_path / "examples"
    for name in UNSEEN:
        (folder / name).mkdir(parents=True)
        for p in (colours / "examples" / name).glob("*.png"):
            (folder / name / p.name).write_bytes(p.read_bytes())
    (folder / "black" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "stray.png").write_bytes((colours / "examples" / "black" / "0.png").read_bytes())
    with pytest.warns(UserWarning, match="skipped 2 example file"):
        report = tagger.add_examples(folder, labels=LABELS)
    assert report.added == {"black": 3, "white": 3}
    assert any("broken.png" in msg for _, msg in report.skipped)
    assert any("stray.png" in msg and "not inside a label folder" in msg for _, msg in report.skipped)


def test_bad_examples_get_clear_errors(tagger, trained, colours, tmp_path):
    black = sorted((colours / "examples" / "black").glob("*.png"))
    with pytest.raises(UsageError, match="0 examples"):
        tagger.add_examples({})
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="0 examples"):
        tagger.add_examples(tmp_path / "empty")
    with pytest.raises(MissingError, match="no such examples folder"):
        tagger.add_examples(tmp_path / "missing")
    (tmp_path / "nofiles" / "black").mkdir(parents=True)
    (tmp_path / "nofiles" / "black" / "notes.txt").write_text("no image here")
    with pytest.raises(UsageError, match="'black' holds no image"):
        tagger.add_examples(tmp_path / "nofiles")
    (tmp_path / "corrupt" / "black").mkdir(parents=True)
    (tmp_path / "corrupt" / "black" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UsageError, match="'black' has no readable example image.*a.png"):
        tagger.add_examples(tmp_path / "corrupt")
    with pytest.raises(UsageError, match=r"\['purple'\] are not in the label list"):
        tagger.add_examples({"purple": black}, labels=LABELS)
    with pytest.raises(UsageError, match="'black': give a list"):
        tagger.add_examples({"black": []})
    with pytest.raises(UsageError, match="alpha"):
        ZeroShotTagger.from_pretrained(trained, fewshot_alpha=-1)
    assert len(tagger.examples) == 0  # nothing half-added by the failures above
    tagger.add_examples({"black": black})
    with pytest.raises(UsageError, match=r"examples for label\(s\) \['black'\] that are not in the label list"):
        tagger.tag(black[0], ["red", "green"])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "multimodal", *args], capture_output=True, text=True, timeout=300)


def test_cli_examples_option(trained, colours, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    images = [str(colours / "test" / name / "0.png") for name in COLOURS]
    run = cli("tag", *images, "--labels-file", str(labels_file), "--examples", str(colours / "examples"),
              "--model", str(trained), "--template", "{}", "--format", "json", "--top-k", "1")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [row["tags"][0]["label"] for row in rows] == LABELS
    bad = tmp_path / "bad"
    (bad / "black").mkdir(parents=True)
    (bad / "black" / "0.png").write_bytes((colours / "examples" / "black" / "0.png").read_bytes())
    (bad / "black" / "broken.png").write_bytes(b"not an image")
    skipped = cli("tag", images[-2], "--labels", ",".join(LABELS), "--examples", str(bad), "--model", str(trained))
    assert skipped.returncode == 1 and "skipped example" in skipped.stderr and "broken.png" in skipped.stderr
    assert "black" in skipped.stdout
    (bad / "purple").mkdir()
    (bad / "purple" / "0.png").write_bytes((colours / "examples" / "black" / "0.png").read_bytes())
    unknown = cli("tag", images[0], "--labels", ",".join(LABELS), "--examples", str(bad), "--model", str(trained))
    assert unknown.returncode == 2 and "['purple'] are not in the label list" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert "--examples DIR" in cli("tag", "--help").stdout
