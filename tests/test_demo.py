"""The Gradio demo, served for real on a loopback port, driven through gradio_client and a real Chromium."""

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port, make_image, png_bomb_bytes

import multimodal as mm
from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, sampling_scheduler
from multimodal.tagging import ZeroShotTagger
from multimodal.tagging.index import build_index
from multimodal_demo.app import Demo, Limits, launch

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Tiny real models (seeded CLIP, toy decoder), an index of a few images, the app on a free port."""
    root = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    clip = mm.create_model("tiny")
    clip_dir = clip.save_pretrained(root / "clip")
    unet, sched = create_decoder("unet-tiny", clip.embed_dim)
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), unet,
                        sampling_scheduler(sched.config)).save_pretrained(root / "pipe")
    photos = root / "photos"
    photos.mkdir()
    for i in range(6):
        make_image(photos / f"p{i}.png", seed=i, size=(48, 48))
    build_index(ZeroShotTagger.from_pretrained(clip_dir), photos, root / "index", model_name=str(clip_dir),
                progress=False)
    demo = Demo(model=str(clip_dir), pipeline=str(root / "pipe"), indexes={"photos": root / "index"},
                label_sets={"colours": ["red", "green", "blue"]}, examples=[str(photos / "p0.png")],
                model_card="# Tiny test model\nmeasured: nothing", limits=Limits(max_steps=8, max_images=3))
    port = free_port()
    app = launch(demo, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    yield {"url": url, "root": root, "photos": photos, "app": app, "demo": demo}
    app.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served["url"], verbose=False)


def upload(url: str, files: list[tuple[str, bytes]]) -> list[str]:
    """Raw uploads to Gradio's upload route, as any HTTP client can send them; returns the server-side paths."""
    import httpx

    response = httpx.post(f"{url}gradio_api/upload", files=[("files", item) for item in files], timeout=60)
    response.raise_for_status()
    return response.json()


def raw_call(url: str, api: str, *data) -> tuple[str, object]:
    """One call through Gradio's plain HTTP API (POST, then read the event stream): ("complete", outputs) or
    ("error", message). Numbers go out as Python's json writes them, NaN and Infinity included."""
    import httpx

    body = json.dumps({"data": list(data)})  # httpx's own json= refuses NaN; a raw client may send it
    event_id = httpx.post(f"{url}gradio_api/call/{api}", content=body, headers={"Content-Type": "application/json"},
                          timeout=60).json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{event_id}", timeout=120) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event in ("complete", "error"):
                payload = json.loads(line[len("data: "):])
                return event, (payload or {}).get("error") if event == "error" else payload
    raise AssertionError(f"no result from /{api}")


def server_file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def start_demo(served, limits: Limits) -> tuple[Demo, object, str]:
    """A second, private server on the same tiny models, for tests that stop it."""
    root = served["root"]
    demo = Demo(model=str(root / "clip"), pipeline=str(root / "pipe"), limits=limits,
                examples=[str(served["photos"] / "p5.png")])
    port = free_port()
    return demo, launch(demo, port=port, block=False), f"http://127.0.0.1:{port}/"


def test_tag_single_label_scores_sum_to_one(client, served):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(served["photos"] / "p1.png")), "cat, dog, car", None,
                         "single-label (softmax)", api_name="/tag")
    scores = {c["label"]: c["confidence"] for c in out["confidences"]}
    assert set(scores) == {"cat", "dog", "car"} and abs(sum(scores.values()) - 1) < 1e-4
    from_set = client.predict(handle_file(str(served["photos"] / "p1.png")), "", "colours",
                              "multi-label (calibrated)", api_name="/tag")
    assert {c["label"] for c in from_set["confidences"]} == {"red", "green", "blue"}


def test_generate_returns_images_and_the_seed(client):
    gallery, info = client.predict("a red apple", "", 2, 3, 3.0, 7, api_name="/generate")
    assert len(gallery) == 2 and all(Path(item["image"]).is_file() for item in gallery)
    assert info.startswith("seed 7 · 3 steps")
    again, _ = client.predict("a red apple", "", 2, 3, 3.0, 7, api_name="/generate")
    assert Path(again[0]["image"]).read_bytes() == Path(gallery[0]["image"]).read_bytes()  # same seed, same image


def test_variations_and_search(client, served):
    from gradio_client import handle_file

    gallery, info = client.predict(handle_file(str(served["photos"] / "p2.png")), 3, 2, 2.0, 1, 0.5,
                                   api_name="/variations")
    assert len(gallery) == 3 and "seed 1" in info and "strength 0.5" in info
    hits = client.predict("photos", "a picture", 4, api_name="/search")
    assert len(hits) == 4 and all(Path(h["image"]).name.startswith("p") for h in hits)


def test_bad_input_is_a_readable_error_and_the_app_keeps_serving(client, served, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes((served["photos"] / "p0.png").read_bytes()[:100])
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_bomb_bytes(20_000, 20_000))
    cases = [
        ((handle_file(str(corrupt)), "cat", None, "single-label (softmax)"), "/tag", "corrupt"),
        ((handle_file(str(bomb)), "cat", None, "single-label (softmax)"), "/tag", "over the limit"),
        ((handle_file(str(served["photos"] / "p0.png")), " , ", None, "single-label (softmax)"), "/tag", "empty"),
        (("", "", 1, 3, 3.0, 1), "/generate", "prompt is empty"),
    ]
    for args, api, words in cases:
        with pytest.raises(AppError, match=words):
            client.predict(*args, api_name=api)
    with pytest.raises(AppError, match="steps must be from 1 to 8, got 5000"):  # the sliders' limits, named
        client.predict("a cat", "", 1, 5000, 3.0, 1, api_name="/generate")
    gallery, info = client.predict("a cat " * 80, "", 1, 2, 3.0, 1, api_name="/generate")
    assert len(gallery) == 1 and "prompt cut to 300 characters" in info  # clamped, and the user is told
    assert client.predict(handle_file(str(served["photos"] / "p0.png")), "cat, dog", None,
                          "single-label (softmax)", api_name="/tag")["label"] in ("cat", "dog")


def test_load_8_clients_5_requests_each(served):
    """A bounded load test on loopback: every request answered; p50/p95 latency and peak memory printed."""
    import resource

    from gradio_client import Client, handle_file

    latencies, errors = [], []
    image = handle_file(str(served["photos"] / "p3.png"))

    def worker(n: int):
        client = Client(served["url"], verbose=False)
        for j in range(5):
            started = time.perf_counter()
            try:
                if (n + j) % 2:
                    client.predict(image, "cat, dog, car", None, "single-label (softmax)", api_name="/tag")
                else:
                    client.predict("a tree", "", 1, 3, 3.0, j, api_name="/generate")
                latencies.append(time.perf_counter() - started)
            except Exception as e:  # noqa: BLE001 - counted and reported below
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(latencies) == 40, errors[:3]
    latencies.sort()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nload: 40 requests, p50 {latencies[19]:.2f}s, p95 {latencies[37]:.2f}s, peak RSS {peak_mb:.0f} MB")


@pytest.mark.browser
def test_real_browser_tag_and_generate(served, tmp_path):
    """Chromium (Debian's) driven by Playwright: upload and tag, generate, then upload a broken file, with
    screenshots kept."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Chromium is not installed (tests/run.sh installs it with apt-get)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-quic", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served["url"])
        page.get_by_role("tab", name="Tag").click()
        page.locator("input[type=file]").first.set_input_files(str(served["photos"] / "p4.png"))
        expect(page.get_by_role("img").first).to_be_visible(timeout=30_000)
        page.get_by_label("labels (comma-separated)").fill("cat, dog, car")
        page.get_by_role("button", name="Tag", exact=True).click()
        tags = page.locator("#tags")
        expect(tags).to_contain_text("cat", timeout=60_000)
        expect(tags).to_contain_text("%", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "demo-tag.png"), full_page=True)
        rendered = tags.inner_text()
        assert all(word in rendered for word in ("cat", "dog", "car"))

        page.get_by_role("tab", name="Generate").click()
        page.get_by_label("prompt", exact=True).fill("a red apple")
        page.get_by_role("button", name="Generate").click()
        try:
            expect(page.locator("#gallery img").first).to_be_visible(timeout=120_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "demo-generate.png"), full_page=True)
        assert page.locator("#seed-info textarea").input_value().startswith("seed")
        page.screenshot(path=str(ARTIFACTS / "demo-generate.png"), full_page=True)
        assert page.locator("#gallery img").count() >= 1

        broken = tmp_path / "broken photo.png"
        broken.write_bytes((served["photos"] / "p0.png").read_bytes()[:100])
        page.get_by_role("tab", name="Variations").click()
        page.locator("input[type=file]").last.set_input_files(str(broken))
        toast = page.get_by_text("broken photo.png: corrupt")
        expect(toast).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)  # the message slides in
        page.screenshot(path=str(ARTIFACTS / "demo-error.png"))
        assert "/tmp" not in toast.inner_text() and "gradio" not in toast.inner_text()
        browser.close()


def test_fewshot_examples_belong_to_one_session(served):
    from types import SimpleNamespace

    demo, photos = served["demo"], served["photos"]
    mine, other = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="other")
    labels = "red, green, my thing"
    before = demo.tag(str(photos / "p3.png"), labels, None, "single-label (softmax)", other)
    info = demo.add_examples([str(photos / "p3.png"), str(photos / "p2.png")], "my thing", mine)
    assert info.startswith("examples: my thing (2)")
    after = demo.tag(str(photos / "p3.png"), labels, None, "single-label (softmax)", mine)
    assert after["my thing"] > max(0.9, before["my thing"])
    assert demo.tag(str(photos / "p3.png"), labels, None, "single-label (softmax)", other) == before
    assert len(demo.tagger.examples) == 0
    with pytest.raises(Exception, match="not in the label list"):
        demo.tag(str(photos / "p3.png"), "red, green", None, "single-label (softmax)", mine)
    with pytest.raises(Exception, match="at most 64"):
        demo.add_examples([str(photos / "p1.png")] * 63, "more", mine)
    assert demo.clear_examples(mine) == "none"
    assert demo.tag(str(photos / "p3.png"), labels, None, "single-label (softmax)", mine) == before


@pytest.mark.browser
def test_real_browser_fewshot_examples(served):
    """Add examples in one browser session, tag with them, see a second session unaffected, clear them."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Chromium is not installed (tests/run.sh installs it with apt-get)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    photos = served["photos"]

    def tag(page) -> str:
        page.get_by_label("labels (comma-separated)").fill("red, green, my thing")
        page.get_by_role("button", name="Tag", exact=True).click()
        expect(page.locator("#tags")).to_contain_text("%", timeout=60_000)
        page.wait_for_timeout(300)
        lines = [line.strip() for line in page.locator("#tags").inner_text().splitlines() if line.strip()]
        return lines[1]  # under the component's name, the top label is shown first, large

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        pages = [browser.new_context().new_page() for _ in range(2)]
        for page in pages:
            page.goto(served["url"])
            page.locator("input[type=file]").first.set_input_files(str(photos / "p3.png"))
        first, second = pages
        first.get_by_text("few-shot: teach a label").click()
        files = [str(photos / "p3.png"), str(photos / "p2.png")]
        first.locator("#example-files input[type=file]").set_input_files(files)
        first.get_by_label("the label they show").fill("my thing")
        first.get_by_role("button", name="Add examples").click()
        expect(first.locator("#example-info textarea")).to_have_value(re.compile("my thing \\(2\\)"), timeout=30_000)
        assert tag(first) == "my thing"
        first.screenshot(path=str(ARTIFACTS / "demo-fewshot.png"), full_page=True)
        zero_shot = served["demo"].tag(str(photos / "p3.png"), "red, green, my thing", None, "single-label (softmax)")
        assert tag(second) == max(zero_shot, key=zero_shot.get)  # the other session has no examples
        first.get_by_role("button", name="Clear examples").click()
        expect(first.locator("#example-info textarea")).to_have_value("none", timeout=30_000)
        browser.close()


def test_uploads_are_deleted_once_older_than_the_cache_age(served):
    """Ten raw uploads (not images, as a script can send them) land in Gradio's upload folder and are gone once
    older than `Limits.cache_seconds`: the cache is bounded in time, however many files arrive. An expired upload
    gets a message saying so; the examples never expire."""
    demo, app, url = start_demo(served, Limits(max_steps=8, max_images=3, cache_seconds=2))
    try:
        photo = (served["photos"] / "p1.png").read_bytes()
        uploaded = upload(url, [(f"blob{i}.bin", os.urandom(1_000_000)) for i in range(9)] + [("p1.png", photo)])
        assert len(uploaded) == 10 and all(Path(p).is_file() for p in uploaded)
        deadline = time.monotonic() + 30
        while any(Path(p).exists() for p in uploaded) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in uploaded if Path(p).exists()], "uploads outlived the cache age"
        event, message = raw_call(url, "tag", server_file(uploaded[-1]), "cat", None, "single-label (softmax)")
        assert (event, message) == ("error", "p1.png: the upload is no longer on the server (uploads are kept "
                                             "2 seconds); upload it again")
        event, (example,) = raw_call(url, "load_example", 0)  # what the page asks for when an example is clicked
        event, tags = raw_call(url, "tag", example["value"], "cat, dog", None, "single-label (softmax)")
        assert event == "complete" and tags[0]["label"] in ("cat", "dog"), tags
    finally:
        app.close()


def test_closing_the_app_removes_uploads_cached_outputs_and_the_demo_folder(served):
    demo, app, url = start_demo(served, Limits(max_steps=8, max_images=3))
    try:
        photo = (served["photos"] / "p0.png").read_bytes()
        uploaded = upload(url, [("blob.bin", os.urandom(1_000_000)), ("p0.png", photo)])
        event, out = raw_call(url, "generate", "a cat", "", 2, 2, 3.0, 1)
        assert event == "complete", out
        cached = [item["image"]["path"] for item in out[0]]  # Gradio's own copies of the outputs
        files = [*uploaded, *cached]
        assert all(Path(p).is_file() for p in files) and list(demo.outputs_dir.rglob("*.png"))
    finally:
        app.close()
    assert not [p for p in files if Path(p).exists()], "files left in Gradio's cache after close"
    assert not demo.outputs_dir.exists(), "the demo's own output folder was left behind"
    other = Demo(model=str(served["root"] / "clip"), pipeline=None)
    other.close()  # a Demo that was never served cleans up too
    assert not other.outputs_dir.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_cli_demo_removes_its_temporary_files(served, tmp_path, sig):
    """`multimodal demo` in its own process with its own TMPDIR: after Ctrl+C or a SIGTERM (what `kill`,
    systemd and docker send) no upload, no output and no multimodal-demo-* folder is left."""
    import httpx
    from gradio_client import Client

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-c", "import sys; from multimodal.cli import main; sys.exit(main(sys.argv[1:]))",
           "demo", "--model", str(served["root"] / "clip"), "--pipeline", str(served["root"] / "pipe"),
           "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        uploaded = upload(url, [("blob.bin", os.urandom(1_000_000))])
        assert Path(uploaded[0]).is_relative_to(tmp)
        Client(url, verbose=False).predict("a cat", "", 1, 2, 3.0, 1, api_name="/generate")
        assert list(tmp.glob("multimodal-demo-*/*/*.png"))
        proc.send_signal(sig)
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, log
    assert not list(tmp.glob("multimodal-demo-*")), log
    left = [p for p in (tmp / "gradio").rglob("*") if p.is_file() and p.stat().st_size]
    assert not left, left  # (Gradio leaves one empty temporary file of its own there)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_in_every_numeric_input(served, bad):
    """NaN and ±inf, sent through the plain HTTP API, get a readable error naming the input, never an image."""
    image = server_file(upload(served["url"], [("p2.png", (served["photos"] / "p2.png").read_bytes())])[0])
    cases = {
        "generate": [(("a cat", "", bad, 2, 3.0, 1), "number of images"), (("a cat", "", 1, bad, 3.0, 1), "steps"),
                     (("a cat", "", 1, 2, bad, 1), "guidance scale"), (("a cat", "", 1, 2, 3.0, bad), "seed")],
        "variations": [((image, bad, 2, 2.0, 1, 1), "number of images"), ((image, 1, bad, 2.0, 1, 1), "steps"),
                       ((image, 1, 2, bad, 1, 1), "guidance scale"), ((image, 1, 2, 2.0, bad, 1), "seed"),
                       ((image, 1, 2, 2.0, 1, bad), "strength")],
        "search": [(("photos", "a picture", bad), "number of results")],
    }
    for api, calls in cases.items():
        for args, name in calls:
            event, message = raw_call(served["url"], api, *args)
            assert event == "error" and message is not None, (api, name, message)
            assert re.fullmatch(rf"{name} must be a finite number, got -?(nan|inf)", message), (api, name, message)


def test_out_of_range_numbers_are_refused_naming_the_input_and_the_limit(client):
    """A careful caller asking for 99 images wants to be told the limit, not to get 3 images without asking."""
    from gradio_client.exceptions import AppError

    for args, words in [((99, 2, 3.0, 1), "number of images must be from 1 to 3, got 99"),
                        ((0, 2, 3.0, 1), "number of images must be from 1 to 3, got 0"),
                        ((1, 2, 15.5, 1), "guidance scale must be from 0 to 15, got 15.5"),
                        ((1, 2.5, 3.0, 1), "steps must be a whole number, got 2.5"),
                        ((1, 2, 3.0, -7), "seed must be from -1 .*, got -7")]:
        with pytest.raises(AppError, match=words):
            client.predict("a cat", "", *args, api_name="/generate")
    with pytest.raises(AppError, match="number of results must be from 1 to 24, got 99"):
        client.predict("photos", "a picture", 99, api_name="/search")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    web_demo = readme.split("## Web demo", 1)[1].split("\n## ", 1)[0]
    assert "clamp" not in web_demo and "refused" in web_demo  # the README says what the demo does


def test_expected_errors_log_one_line_and_unexpected_ones_a_traceback(client, served, tmp_path, caplog, capfd,
                                                                      monkeypatch):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes((served["photos"] / "p0.png").read_bytes()[:100])
    capfd.readouterr()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="multimodal.demo"), pytest.raises(AppError, match="corrupt"):
        client.predict(handle_file(str(corrupt)), "cat", None, "single-label (softmax)", api_name="/tag")
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err, printed.err
    lines = [r for r in caplog.records if r.name == "multimodal.demo"]
    assert len(lines) == 1 and lines[0].exc_info is None and "corrupt.png" in lines[0].getMessage()
    assert "\n" not in lines[0].getMessage()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug in the tagger")

    monkeypatch.setattr(served["demo"].tagger, "tag", broken)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="multimodal.demo"), \
            pytest.raises(AppError, match=r"Something went wrong \(RuntimeError\): simulated bug"):
        client.predict(handle_file(str(served["photos"] / "p0.png")), "cat", None, "single-label (softmax)",
                       api_name="/tag")
    lines = [r for r in caplog.records if r.name == "multimodal.demo"]
    assert len(lines) == 1 and lines[0].exc_info is not None  # logged with its traceback
    assert "simulated bug in the tagger" in logging.Formatter().format(lines[0])


def test_error_messages_name_the_file_not_the_server_path(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    for name, data in [("holiday photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), ("notes.png", b"just text")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(AppError) as caught:
            client.predict(handle_file(str(tmp_path / name)), "cat", None, "single-label (softmax)", api_name="/tag")
        message = str(caught.value)
        assert message.startswith(f"{name}: "), message
        assert tempfile.gettempdir() not in message and "gradio" not in message, message
        assert not re.search(r"[0-9a-f]{32}", message), message  # no cache hash either


def test_bf16_demo_tags_and_generates_under_bf16_where_the_cpu_has_it(served):
    """`multimodal demo --bf16`: both the tagger and the pipeline switch, and the page's functions still answer."""
    import torch

    from multimodal.precision import bf16_is_fast

    fast = bf16_is_fast(torch.device("cpu"))
    demo = Demo(model=str(served["root"] / "clip"), pipeline=str(served["root"] / "pipe"), bf16=True)
    try:
        assert demo.pipe.bf16 == fast and demo.tagger.bf16 == fast
        assert demo.pipe("red", num_inference_steps=2, output_type="np").images.shape == (1, 32, 32, 3)
        assert len(demo.tagger.tag(served["photos"] / "p0.png", ["red", "green"])) == 2
    finally:
        demo.close()
    plain = Demo(model=str(served["root"] / "clip"), pipeline=str(served["root"] / "pipe"))
    assert not plain.pipe.bf16 and not plain.tagger.bf16
    plain.close()
