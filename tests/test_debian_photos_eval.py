"""training/recipes/debian_photos_eval.py: the published table becomes an ImageFolder, whole or not at all."""

import importlib.util
from pathlib import Path

import pytest
from conftest import make_image

SPEC = importlib.util.spec_from_file_location(
    "debian_photos_eval", Path(__file__).parents[1] / "training" / "recipes" / "debian_photos_eval.py")
debian_photos_eval = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(debian_photos_eval)


def table(tmp_path, rows, name="labels.tsv"):
    path = tmp_path / name
    path.write_text("package\tpath\tlabel\tnote\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_the_published_table_is_valid_and_unique():
    rows = debian_photos_eval.read_rows()
    assert len(rows) == 50 and len({r["label"] for r in rows}) == 42
    names = {debian_photos_eval.target(Path("out"), r).stem for r in rows}
    assert len(names) == 50  # every file keeps its own evaluation key


def test_copies_into_label_folders_and_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    for folder in ("a", "b"):
        (tmp_path / "src" / folder).mkdir(parents=True)
    a, b = (make_image(tmp_path / "src" / f / "home.jpg", seed=i) for i, f in enumerate("ab"))
    labels = table(tmp_path, [("pkg", str(a), "house", ""), ("pkg", str(b), "building", "")])
    out = tmp_path / "out"
    assert debian_photos_eval.main(["--out", str(out), "--labels", str(labels)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["building/pkg-b-home.jpg",
                                                                               "house/pkg-a-home.jpg"]
    assert (out / "house" / "pkg-a-home.jpg").read_bytes() == a.read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        debian_photos_eval.main(["--out", str(out), "--labels", str(labels)])
    gone = table(tmp_path, [("some-deb", str(tmp_path / "nope.jpg"), "cat", "")], "gone.tsv")
    with pytest.raises(SystemExit, match="nope.jpg; install them with: apt-get install some-deb"):
        debian_photos_eval.main(["--out", str(tmp_path / "out2"), "--labels", str(gone)])
    # a copy that fails half-way (the disk fills up) leaves neither the set nor a temporary folder
    copy, calls = debian_photos_eval.shutil.copyfile, []

    def fills_up(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return copy(src, dst)

    monkeypatch.setattr(debian_photos_eval.shutil, "copyfile", fills_up)
    with pytest.raises(OSError, match="No space"):
        debian_photos_eval.main(["--out", str(tmp_path / "out3"), "--labels", str(labels)])
    assert not (tmp_path / "out3").exists() and not list(tmp_path.glob(".out3.*"))
    for bad_row in (("pkg", str(a), "..", ""), ("pkg", str(a), "cat")):
        with pytest.raises(SystemExit, match="folder name"):
            debian_photos_eval.read_rows(table(tmp_path, [bad_row], "bad.tsv"))
