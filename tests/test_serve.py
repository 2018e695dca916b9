"""`salmap serve`'s HTTP interface with EfficientNet-Lite0: uploads good and bad, sessions, the
caches, downloads, curves, the reports tab, and no file served outside the page's own."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from starlette.testclient import TestClient

from salmap.cli import main
from salmap.evaluation.accumulators import COLUMNS
from salmap.models import LoadedModel, load
from salmap.models.transforms import classifier_transform
from salmap.serve import Engine, create_app, read_reports, routes

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
SECRET = "the secret of a file outside the page"


def encoded(pixels: np.ndarray, kind: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load("efficientnet_lite0"))


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory) -> Path:
    """An evaluation folder (metrics.json in the format `salmap evaluate` writes, with its real
    column descriptions), a figure, a link that points outside, and a secret file beside it."""
    base = tmp_path_factory.mktemp("reports")
    (base / "secret.txt").write_text(SECRET)
    Image.new("RGB", (4, 4), "red").save(base / "secret.png")
    folder = base / "evaluation" / "twin"
    folder.mkdir(parents=True)
    methods = {
        "gradcam": {"deletion": 0.21, "insertion": 0.55},
        "gradient": {"deletion": 0.12, "insertion": 0.31},
    }
    columns = {
        column.key: {
            "title": column.title,
            "group": column.group,
            "percent": column.percent,
            "better": column.better,
        }
        for column in COLUMNS
    }
    document = {
        "data": "digits:twin",
        "model": "digits_cnn",
        "images": 4,
        "accuracy": 1.0,
        "methods": methods,
    }
    (folder / "metrics.json").write_text(json.dumps({**document, "columns": columns}))
    Image.new("RGB", (8, 8), "blue").save(folder / "gallery.png")
    (folder / "curves.png").symlink_to(base / "secret.png")
    return base / "evaluation"


@pytest.fixture(scope="module")
def app(engine: Engine, report_folder: Path):
    return create_app(engine, read_reports(report_folder), curve_steps=14)


def browser(app) -> TestClient:
    """A client with its own cookies, as one browser: the page's address first."""
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/").status_code == 200
    return client


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return browser(app)


@pytest.fixture(scope="module")
def cat(client: TestClient) -> dict:
    response = client.post(
        "/api/images", content=encoded(data.chelsea()), headers={"X-Filename": "chelsea.jpg"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def decode_values(found: dict) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(found["values"]), dtype="<u2")
    return values.reshape(found["height"], found["width"]) / 65535.0


def test_page_and_its_files_are_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, media in (
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    assert "http" not in client.get("/static/style.css").text  # nothing fetched from elsewhere
    info = client.get("/api/info").json()
    assert info["model"] == "efficientnet_lite0" and len(info["classes"]) == 1000
    names = [method["name"] for method in info["methods"]]
    assert {"gradient", "gradcam", "smoothgrad", "cameras", "cam", "guided_backprop"} <= set(names)
    assert "casm" not in names  # a trained mapper needs the digits model or --checkpoint
    assert info["curve_steps"] == 14 and len(info["colormaps"]["inferno"]) == 256
    assert info["samples"] == ["chelsea", "coffee", "rocket", "astronaut", "motorcycle"]


def test_upload_gives_the_top5_and_a_cached_map(client: TestClient, cat: dict) -> None:
    assert (cat["width"], cat["height"]) == (451, 300)
    top = cat["top"]
    assert len(top) == 5 and top[0]["index"] in CATS
    assert [entry["probability"] for entry in top] == sorted(
        (entry["probability"] for entry in top), reverse=True
    )
    url = f"/api/images/{cat['id']}/maps/gradcam"
    first = client.get(url).json()
    assert first["target"] == top[0]["index"] and not first["cached"]
    assert (first["width"], first["height"]) == (451, 300)
    values = decode_values(first)
    assert values.max() == pytest.approx(1.0, abs=1e-4) and values.min() == 0.0
    again = client.get(url).json()
    assert again["cached"] and again["values"] == first["values"]
    assert first["choices"]["layer"] == "bn2"
    x0, y0, x1, y1 = first["boxes"]["cam"]
    assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300


def test_maps_are_cached_per_class_and_shared_by_identical_images(app, client: TestClient, cat: dict) -> None:
    url = f"/api/images/{cat['id']}/maps/gradient"
    second = cat["top"][1]["index"]
    top1 = client.get(url).json()
    other = client.get(url, params={"target": second}).json()
    assert other["target"] == second and not other["cached"]
    assert other["values"] != top1["values"]
    assert client.get(url, params={"target": second}).json()["cached"]
    # the same photo opened again, in another session: its maps are already there
    another = browser(app)
    again = another.post(
        "/api/images", content=encoded(data.chelsea()), headers={"X-Filename": "b.jpg"}
    ).json()
    assert again["id"] != cat["id"]
    assert another.get(f"/api/images/{again['id']}/maps/gradient", params={"target": second}).json()["cached"]


def test_two_sessions_get_their_own_images(app, client: TestClient, cat: dict) -> None:
    other = browser(app)
    coffee = other.post("/api/samples/coffee").json()
    assert coffee["top"][0]["index"] not in CATS
    assert other.get(f"/api/images/{cat['id']}/maps/gradcam").status_code == 404
    assert client.get(f"/api/images/{coffee['id']}/view.jpg").status_code == 404
    assert other.get(f"/api/images/{coffee['id']}/maps/gradcam").json()["target"] == coffee["top"][0]["index"]
    assert client.get(f"/api/images/{cat['id']}/maps/gradcam").json()["target"] in CATS
    stranger = TestClient(app, base_url="http://127.0.0.1")
    refused = stranger.get(f"/api/images/{cat['id']}/maps/gradcam")
    assert refused.status_code == 401 and "reload" in refused.json()["error"]


def truncated_jpeg() -> bytes:
    whole = encoded(data.coffee())
    return whole[: len(whole) // 3]


def too_many_pixels() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (8000, 5001)).save(buffer, format="PNG")  # 40.008 megapixels
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("notes.txt", lambda: b"these are my notes, not a photo\n", "is not an image"),
        ("empty.png", lambda: b"", "is empty"),
        ("cut.jpg", truncated_jpeg, "truncated or damaged"),
        ("huge.png", too_many_pixels, "the limit is 40 megapixels"),
        ("drawing.gif", lambda: encoded(data.coffee(), "GIF"), "is not an image"),
    ],
)
def test_bad_uploads_get_one_clear_message(client: TestClient, name, make, fragment) -> None:
    response = client.post("/api/images", content=make(), headers={"X-Filename": name})
    assert response.status_code == 400
    message = response.json()["error"]
    assert fragment in message and message.startswith(name) and "\n" not in message
    assert client.post("/api/samples/rocket").status_code == 200  # the server goes on


def test_an_upload_over_the_byte_limit_is_refused(client: TestClient, monkeypatch) -> None:
    monkeypatch.setattr(routes, "MAX_UPLOAD_BYTES", 1000)
    response = client.post(
        "/api/images", content=encoded(data.coffee(), "PNG"), headers={"X-Filename": "c.png"}
    )
    assert response.status_code == 413 and "larger than" in response.json()["error"]


@pytest.mark.parametrize("kind", ["PNG", "WEBP", "BMP", "TIFF"])
def test_other_formats_are_read(client: TestClient, kind: str) -> None:
    response = client.post(
        "/api/images", content=encoded(data.chelsea(), kind), headers={"X-Filename": f"c.{kind}"}
    )
    assert response.status_code == 200 and response.json()["top"][0]["index"] in CATS


def test_exif_rotation_is_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    content = encoded(data.chelsea(), "JPEG", exif=exif.tobytes())
    found = client.post("/api/images", content=content, headers={"X-Filename": "turned.jpg"}).json()
    assert (found["width"], found["height"]) == (300, 451)


def test_downloads_and_results(client: TestClient, cat: dict) -> None:
    base = f"/api/images/{cat['id']}"
    target = cat["top"][2]["index"]
    npy = client.get(f"{base}/maps/gradcam/map.npy", params={"target": target})
    assert npy.status_code == 200
    assert f'filename="chelsea_gradcam_class{target}.npy"' in npy.headers["content-disposition"]
    saliency = np.load(io.BytesIO(npy.content))
    assert saliency.shape == (300, 451) and saliency.dtype == np.float32
    assert saliency.min() >= 0.0 and saliency.max() <= 1.0 and saliency.max() > 0.9
    png = client.get(
        f"{base}/maps/gradcam/map.png", params={"target": target, "alpha": 0.5, "colormap": "viridis"}
    )
    assert Image.open(io.BytesIO(png.content)).size == (451, 300)
    assert client.get(f"{base}/maps/gradcam/map.png", params={"alpha": "nan"}).status_code == 400
    curves = client.get(f"{base}/curves/gradcam", params={"target": target}).json()
    assert curves["steps"] == 14 and len(curves["deletion"]) == 15 and not curves["cached"]
    assert 0.0 <= curves["deletion_auc"] <= 1.0 and 0.0 <= curves["insertion_auc"] <= 1.0
    probability = next(entry["probability"] for entry in cat["top"] if entry["index"] == target)
    assert curves["deletion"][0] == pytest.approx(probability, abs=1e-3)  # nothing deleted yet
    assert client.get(f"{base}/curves/gradcam", params={"target": target}).json()["cached"]
    results = client.get(
        f"{base}/results.json", params={"target": target, "methods": "gradcam,gradient"}
    ).json()
    assert results["model"] == "efficientnet_lite0" and "torch" in results["versions"]
    first, second = results["records"]
    assert (first["method"], second["method"]) == ("gradcam", "gradient")
    assert first["target"] == target and first["map"] == f"chelsea_gradcam_class{target}.npy"
    assert first["deletion_auc"] == pytest.approx(curves["deletion_auc"], abs=1e-6)
    assert "deletion_auc" not in second and set(second["boxes"]) == {"cam_rule", "casm_rule"}
    assert results["choices"]["gradcam"]["layer"] == "bn2"


def test_any_class_by_index_and_bad_classes(client: TestClient, cat: dict) -> None:
    url = f"/api/images/{cat['id']}/maps/gradcam"
    found = client.get(url, params={"target": 409}).json()
    assert found["target_name"] == "analog clock" and found["probability"] < 0.01
    for bad in ("1000", "-1", "tabby", "1e3", "²", "00000000000000000000001"):
        response = client.get(url, params={"target": bad})
        assert response.status_code == 400 and "0..999" in response.json()["error"]


def test_the_reports_tab(client: TestClient) -> None:
    found = client.get("/api/reports").json()
    (report,) = found["reports"]
    assert found["groups"]["evidence"] == "Faithfulness and evidence"
    assert report["folder"] == "twin" and report["metrics"]["methods"]["gradcam"]["insertion"] == 0.55
    assert report["metrics"]["columns"]["deletion"]["better"] == "lower"
    assert set(report["figures"]) == {"gallery.png"}  # the link to a file outside is left out
    figure = client.get(f"/api/reports/figures/{report['figures']['gallery.png']}")
    assert figure.status_code == 200 and Image.open(io.BytesIO(figure.content)).size == (8, 8)


def traversals(image: str) -> list[tuple[str, str]]:
    """(method, url) of a request that names a file outside the page in each parameter."""
    up = "..%2F..%2F..%2Fsecret.txt"
    base = f"/api/images/{image}"
    return [
        ("GET", f"/static/{up}"),
        ("GET", "/static/..%2Fengine.py"),
        ("GET", "/static/%2e%2e%2f%2e%2e%2freports%2fsecret.txt"),
        ("GET", f"/api/images/{up}/view.jpg"),
        ("GET", f"/api/images/{up}/maps/gradcam"),
        ("GET", f"{base}/maps/{up}"),
        ("GET", f"{base}/maps/gradcam/map.{up}"),
        ("GET", f"{base}/maps/gradcam?target={up}"),
        ("GET", f"{base}/maps/gradcam/map.png?colormap={up}"),
        ("GET", f"{base}/maps/gradcam/map.png?alpha={up}"),
        ("GET", f"{base}/curves/gradcam?steps={up}"),
        ("GET", f"{base}/results.json?methods={up}"),
        ("POST", f"/api/samples/{up}"),
        ("GET", f"/api/samples/{up}/thumbnail.jpg"),
        ("GET", f"/api/reports/figures/{up}"),
        ("GET", "/api/reports/figures/..%2Fsecret.png"),
        ("GET", "/api/reports/figures/-1"),
        ("GET", "/api/reports/figures/1"),
        ("GET", "/%2e%2e/%2e%2e/secret.txt"),
    ]


def test_no_parameter_reaches_a_file_outside_the_page(
    client: TestClient, cat: dict, report_folder: Path
) -> None:
    secret_png = (report_folder.parent / "secret.png").read_bytes()
    for method, url in traversals(cat["id"]):
        response = client.request(method, url)
        assert 400 <= response.status_code < 500, (url, response.status_code)
        assert SECRET.encode() not in response.content and secret_png not in response.content, url
    # a file name with a path in it names the image, never a place on disk
    upload = client.post(
        "/api/images", content=encoded(data.coffee()), headers={"X-Filename": "..%2F..%2Ftmp%2Fevil.jpg"}
    ).json()
    assert upload["name"] == "evil.jpg"
    npy = client.get(f"/api/images/{upload['id']}/maps/gradient/map.npy")
    assert 'filename="evil_gradient_class' in npy.headers["content-disposition"]


def test_other_host_names_are_refused(app) -> None:
    """A page on another site that resolves its own name to 127.0.0.1 cannot use the server."""
    assert TestClient(app, base_url="http://attacker.example").get("/").status_code == 400
    assert TestClient(app, base_url="http://localhost:8000").get("/").status_code == 200


def vit_loaded() -> LoadedModel:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()
    mean = std = (0.5, 0.5, 0.5)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(
        name="vit_tiny_patch16_224",
        model=model,
        preprocess=classifier_transform(248, (224, 224), mean, std),
        input_size=(224, 224),
        class_names=[f"class {i}" for i in range(10)],
        target_layer=None,
        mean=mean,
        std=std,
        resize=248,
        pretrained=False,
    )


def test_a_vision_transformer_maps_or_refuses_per_method() -> None:
    app = create_app(Engine(vit_loaded()))
    client = browser(app)
    photo = client.post("/api/samples/astronaut").json()
    assert len(photo["top"]) == 5
    for method in ("gradcam", "gradient"):
        found = client.get(f"/api/images/{photo['id']}/maps/{method}").json()
        assert (found["width"], found["height"]) == (512, 512) and decode_values(found).max() > 0.5
    assert "layer" in client.get(f"/api/images/{photo['id']}/maps/gradcam").json()["choices"]
    refused = client.get(f"/api/images/{photo['id']}/maps/cam")
    assert refused.status_code == 400 and "\n" not in refused.json()["error"]


def test_the_digits_model_offers_the_trained_mappers_whose_maps_fit_every_class() -> None:
    engine = Engine(load("digits_cnn"))
    assert {"casm", "baseline"} <= set(engine.methods)
    assert not engine.methods["casm"].class_dependent and engine.methods["gradcam"].class_dependent
    client = browser(create_app(engine))
    photo = client.post("/api/samples/coffee").json()
    url = f"/api/images/{photo['id']}/maps/casm"
    first = client.get(url, params={"target": 3}).json()
    assert not first["cached"] and not first["class_dependent"] and first["settings"]["thinning"] == "L100"
    other = client.get(url, params={"target": 5}).json()
    assert other["cached"] and other["values"] == first["values"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--report", "/no/such/folder"], "no such folder"),
        (["--curve-steps", "0"], "--curve-steps must be >= 1"),
    ],
)
def test_serve_refuses_bad_options_in_one_line(arguments, fragment, capsys) -> None:
    assert main(["serve", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert fragment in error and "\n" not in error
