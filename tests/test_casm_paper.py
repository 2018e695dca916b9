"""The paper preset of `train-casm` end to end on a tiny ImageNet-layout folder (JPEGs with XML
boxes, made here), then `evaluate --protocol casm` on its mapper: a small backbone, few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from salmap.casm import CASM
from salmap.cli import main

WNIDS = ("n01440764", "n01443537")  # tench and goldfish: ImageNet-1k indices 0 and 1


def write_tree(root: Path) -> None:
    """train/<wnid>/ with four JPEGs per class; val/<wnid>/ with two JPEGs per class, each with a
    VOC XML box (1-based inclusive numbers) next to it, images of several shapes."""
    rng = np.random.default_rng(0)
    sizes = [(300, 240), (240, 320), (260, 260), (400, 230)]
    for index, wnid in enumerate(WNIDS):
        for k, (width, height) in enumerate(sizes):
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            pixels[height // 4 : height // 2, width // 3 : 2 * width // 3] = (200, 60 * index, 30)
            for split in ("train",) + (("val",) if k < 2 else ()):
                folder = root / split / wnid
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG")
                if split == "val":
                    box = (width // 3 + 1, height // 4 + 1, 2 * width // 3, height // 2)
                    (folder / f"{wnid}_{k}.xml").write_text(
                        f"<annotation><size><width>{width}</width><height>{height}</height></size>"
                        f"<object><name>{wnid}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
                        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>"
                    )


def test_paper_preset_trains_on_an_imagenet_folder_and_scores_by_the_casm_protocol(tmp_path, capsys):
    write_tree(tmp_path / "data")
    run = tmp_path / "run"
    torch.manual_seed(0)
    arguments = ["train-casm", "--preset", "paper", "--data", str(tmp_path / "data"), "--out", str(run)]
    arguments += ["--model", "resnet18", "--random-init", "--steps", "2", "--batch-size", "4"]
    assert main([*arguments, "--num-workers", "0", "--no-progress"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "paper" and config["classifier_update"] == "two_steps"
    assert (config["decoder_stem"], config["mask_upsample"], config["train_crop"]) == (
        "pooled",
        "nearest",
        "random",
    )
    assert config["fill_value"] == 0.0 and config["thinning"] == "L100"
    mapper = CASM.from_checkpoint(run / "casm.pt")
    masks = mapper(torch.randn(1, 3, 224, 224), normalize=False)[0]
    blocks = masks.view(56, 4, 56, 4)
    assert torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks))  # the 56 x 56 grid, nearest x4

    classifier = tmp_path / "resnet18.pt"
    torch.save(torch.load(run / "casm.pt", weights_only=True)["classifier"], classifier)
    out = tmp_path / "scores"
    evaluate = ["evaluate", "--data", f"imagenet:{tmp_path / 'data'}", "--model", str(classifier)]
    evaluate += ["--arch", "resnet18", "--method", "casm,gradient", "--checkpoint", str(run / "casm.pt")]
    assert main([*evaluate, "--protocol", "casm", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Protocol `casm`" in report and "OM, CASM rule, own classifier" in report
    document = json.loads((out / "metrics.json").read_text())
    assert document["images"] == 4 and document["protocol"] == "casm"
    for row in document["methods"].values():
        for key in ("om_casm_own", "le_casm", "f1", "f1a", "masked_in", "masked_out", "inpainted"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["om_casm_own"] >= row["le_casm"]
