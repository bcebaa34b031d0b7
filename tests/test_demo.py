"""The Gradio demo, served for real on a loopback port, driven through gradio_client and a real Chromium."""

import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import make_image, png_bomb_bytes

import multimodal as mm
from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, sampling_scheduler
from multimodal.tagging import ZeroShotTagger
from multimodal.tagging.index import build_index
from multimodal_demo.app import Demo, Limits, launch

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    yield {"url": url, "root": root, "photos": photos, "app": app}
    app.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served["url"], verbose=False)


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

    gallery, info = client.predict(handle_file(str(served["photos"] / "p2.png")), 3, 2, 2.0, 1,
                                   api_name="/variations")
    assert len(gallery) == 3 and "seed 1" in info
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
    with pytest.raises(AppError, match="greater than maximum value 8"):  # the sliders' own limits
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
def test_real_browser_tag_and_generate(served):
    """Chromium (Debian's) driven by Playwright: upload and tag, then generate, with screenshots kept."""
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
        browser.close()
