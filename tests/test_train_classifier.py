import numpy as np
import pytest
import torch
from PIL import Image

from salmap.cli import main
from salmap.data.digits import DIGITS_MEAN, DIGITS_STD, build_split
from salmap.errors import SalmapError
from salmap.models.digits import SHIPPED_CHECKPOINT, DigitsCNN, load_digits_cnn
from salmap.train_classifier import accuracy, train_digits_classifier

TINY = {
    "epochs": 1,
    "samples_per_epoch": 512,
    "batch_size": 32,
    "lr": 1e-2,
    "canvas_size": 32,
    "val_samples": 20,
    "test_samples": 20,
    "progress": False,
}


def test_short_training_lowers_the_loss_and_the_checkpoint_round_trips(tmp_path):
    out = tmp_path / "models" / "digits.pt"
    result = train_digits_classifier(out, **TINY)
    assert len(result.losses) == 16
    assert np.mean(result.losses[-4:]) < np.mean(result.losses[:4]) - 0.3
    assert [p.name for p in out.parent.iterdir()] == ["digits.pt"], "no temporary file left"
    loaded = load_digits_cnn(out)
    assert loaded.class_names == [str(d) for d in range(10)]
    assert loaded.target_layer == "stage3" and loaded.input_size == (32, 32)
    assert not loaded.model.training
    test = build_split("test", 20, seed=0, canvas_size=32)
    assert accuracy(loaded.model, test) == pytest.approx(result.test_accuracy)


def test_refuses_to_overwrite_without_the_flag(tmp_path, capsys):
    out = tmp_path / "digits.pt"
    out.write_bytes(b"precious")
    with pytest.raises(SalmapError, match="--overwrite"):
        train_digits_classifier(out, **TINY)
    assert main(["train-classifier", "--out", str(out), "--epochs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    args = ["--epochs", "1", "--samples-per-epoch", "32", "--batch-size", "16", "--val-samples", "8"]
    code = main(["train-classifier", "--out", str(out), *args, "--test-samples", "8", "--overwrite"])
    assert code == 0 and "test accuracy" in capsys.readouterr().out
    assert load_digits_cnn(out).model.fc.out_features == 10


def test_bad_checkpoints_raise_salmap_error(tmp_path):
    with pytest.raises(SalmapError, match="no digits checkpoint"):
        load_digits_cnn(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(SalmapError, match="cannot read"):
        load_digits_cnn(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(SalmapError, match="not a salmap digits checkpoint"):
        load_digits_cnn(other)


def test_logits_are_linear_in_pooled_last_stage_features_so_cam_is_exact():
    model = DigitsCNN().eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = model.stage3(model.stage2(model.stage1(model.stem(x))))
        cams = torch.einsum("kc,bchw->bkhw", model.fc.weight, features)
        logits = cams.mean((2, 3)) + model.fc.bias
        assert features.shape == (2, 96, 16, 16)
        assert torch.allclose(logits, model(x), atol=1e-5)


def test_shipped_checkpoint_reaches_95_percent_on_held_out_digits():
    assert SHIPPED_CHECKPOINT.is_file() and SHIPPED_CHECKPOINT.stat().st_size < 1_000_000
    loaded = load_digits_cnn()
    test = build_split("test", 400, seed=12345)
    assert accuracy(loaded.model, test) >= 0.95
    # The PIL preprocessing reproduces the dataset's normalisation.
    pixels = (test.images[0, 0] * DIGITS_STD[0] + DIGITS_MEAN[0]).numpy()
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L")
    assert torch.allclose(loaded.preprocess(image), test.images[0], atol=0.5 / 255 / DIGITS_STD[0] + 1e-6)
