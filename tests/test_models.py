"""Loading classifiers offline: the pretrained default, user checkpoints, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from skimage import data

import salmap
from salmap import SalmapError


@pytest.fixture(scope="module")
def lite0() -> salmap.models.LoadedModel:
    return salmap.models.load("efficientnet_lite0")


def top_classes(loaded: salmap.models.LoadedModel, pixels, k: int) -> list[str]:
    x = loaded.preprocess(Image.fromarray(pixels))[None]
    with torch.no_grad():
        indices = loaded.model(x).topk(k).indices[0]
    return [loaded.class_names[i] for i in indices]


def test_pretrained_lite0_knows_the_cat_and_the_espresso(lite0) -> None:
    assert set(top_classes(lite0, data.chelsea(), 3)) & {"Egyptian cat", "tabby", "tiger cat"}
    assert top_classes(lite0, data.coffee(), 1) == ["espresso"]


def test_loaded_model_is_frozen_eval_with_its_layer(lite0) -> None:
    assert not lite0.model.training
    assert not any(p.requires_grad for p in lite0.model.parameters())
    assert lite0.input_size == (224, 224) and lite0.resize == 256
    assert lite0.target_layer in dict(lite0.model.named_modules())
    assert lite0.preprocess(Image.new("RGB", (300, 200))).shape == (3, 224, 224)


def test_class_index_by_name_or_number(lite0) -> None:
    assert lite0.class_index("espresso") == 967
    assert lite0.class_index("Tabby") == 281
    assert lite0.class_index("5") == 5 and lite0.class_index(999) == 999
    with pytest.raises(SalmapError, match="out of range"):
        lite0.class_index(1000)
    with pytest.raises(SalmapError, match="unknown class name"):
        lite0.class_index("unicorn")


def test_unknown_model_is_refused() -> None:
    with pytest.raises(SalmapError, match="unknown model"):
        salmap.models.load("no_such_net")


def test_torchvision_weights_come_from_the_local_cache_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(SalmapError, match="no pretrained weights for resnet18"):
        salmap.models.load("resnet18")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    loaded = salmap.models.load("resnet18")
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(loaded.model(x), reference(x))
    assert loaded.target_layer == "layer4" and loaded.class_names[0] == "tench"


def test_timm_without_local_weights_is_a_clear_error() -> None:
    with pytest.raises(SalmapError, match="no pretrained weights for timm's resnet10t on this machine"):
        salmap.models.load("resnet10t")


def test_user_state_dict_with_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": reference.state_dict()}, path)
    loaded = salmap.models.load(str(path), arch="resnet18")
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(loaded.model(x), reference(x))
    assert loaded.class_names == [str(i) for i in range(7)]
    with pytest.raises(SalmapError, match="does not fit the architecture resnet34"):
        salmap.models.load(str(path), arch="resnet34")
    with pytest.raises(SalmapError, match="not a TorchScript file"):
        salmap.models.load(str(path))


def test_torchscript_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.script(reference).save(str(path))
    loaded = salmap.models.load(str(path))
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(loaded.model(x), reference(x))
    assert salmap.Gradient(loaded.model)(x).shape == (1, 224, 224)
    assert loaded.target_layer is None
    with pytest.raises(SalmapError, match="TorchScript models take no hooks"):
        salmap.GradCAM(loaded.model)(x)
    with pytest.raises(SalmapError, match="TorchScript"):
        salmap.GuidedBackprop(loaded.model)(x)


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(SalmapError, match="does not exist"):
        salmap.models.load(str(tmp_path / "absent.pt"))


def test_timm_weights_from_the_local_torch_hub_cache(tmp_path: Path, monkeypatch) -> None:
    import timm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t", pretrained=False).eval()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet10t_176_c3-f3215ab1.pth")
    loaded = salmap.models.load("resnet10t")
    x = torch.randn(1, 3, 176, 176)
    torch.testing.assert_close(loaded.model(x), reference(x))
    assert loaded.input_size == (176, 176)
