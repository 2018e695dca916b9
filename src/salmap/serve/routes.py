"""The page's HTTP interface. Every parameter is checked against what the page itself offers
(session and image identifiers, method and colour-map names, class indices, photo names, figure
numbers); no parameter is ever used as a path."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from salmap.errors import SalmapError

from .engine import BOX_RULES, COLORMAPS, ComputedMap, Curves, Engine, NotAnImage, Picture, safe_name
from .reports import ReportFolder
from .static import asset
from .store import ComputeCache, Session, Sessions

COOKIE = "salmap_session"
MAX_UPLOAD_BYTES = 200 * 2**20
MAP_CACHE = 512
CURVE_CACHE = 512
CURVE_STEPS = (224, 112, 56, 28, 14)


class ClientError(Exception):
    """A request the page refuses: an HTTP status and a one-line message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_number(text: str) -> bool:
    """Whether `text` is a whole number written in ASCII digits (at most 9 of them)."""
    return 0 < len(text) <= 9 and text.isascii() and text.isdigit()


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class Pages:
    """The handlers, over one engine, the sessions and the caches of maps and curves."""

    def __init__(self, engine: Engine, reports: ReportFolder | None, curve_steps: int | None) -> None:
        self.engine = engine
        self.reports = reports
        self.curve_steps = curve_steps
        self.sessions: Sessions[Picture] = Sessions()
        self.maps: ComputeCache[ComputedMap] = ComputeCache(MAP_CACHE)
        self.curves: ComputeCache[Curves] = ComputeCache(CURVE_CACHE)
        self.photos = engine.sample_photos()
        self.thumbnails = {name: self._thumbnail(photo) for name, photo in self.photos.items()}
        self.colormaps = engine.colormaps()

    @staticmethod
    def _thumbnail(photo: Image.Image) -> bytes:
        small = photo.copy()
        small.thumbnail((160, 160), Image.Resampling.LANCZOS)
        return _jpeg(small, 85)

    # sessions and parameters

    def session(self, request: Request) -> Session[Picture]:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise ClientError(401, "this page's session has expired: reload the page")
        return session

    def picture(self, request: Request) -> Picture:
        found = self.session(request).image(request.path_params["image"])
        if found is None:
            raise ClientError(404, "no such image in this session (it may have expired): open it again")
        return found

    def method(self, request: Request) -> str:
        name = request.path_params["method"]
        if name not in self.engine.methods:
            raise ClientError(404, f"unknown method; this page offers {', '.join(self.engine.methods)}")
        return name

    def target(self, request: Request, picture: Picture) -> int:
        """The class of `?target=` (an index), or the image's top-1 class."""
        raw = request.query_params.get("target")
        if raw is None or raw == "":
            return self.engine.top_classes(picture, 1)[0].index
        if not is_number(raw) or int(raw) >= len(self.engine.class_names):
            raise ClientError(400, f"the class must be an index 0..{len(self.engine.class_names) - 1}")
        return int(raw)

    def steps(self, request: Request) -> int | None:
        raw = request.query_params.get("steps")
        if raw is None or raw == "":
            return self.curve_steps
        if not is_number(raw) or not 1 <= int(raw) <= 4096:
            raise ClientError(400, "curve steps must be a whole number from 1 to 4096")
        return int(raw)

    # computations (cached)

    async def computed(self, picture: Picture, method: str, target: int) -> tuple[ComputedMap, bool]:
        key = self.engine.map_key(picture, method, target)
        found = self.maps.get(key)
        if found is not None:
            return found, True
        return await run_in_threadpool(
            self.maps.get_or_compute, key, lambda: self.engine.explain(picture, method, target)
        )

    # handlers

    async def index(self, request: Request) -> Response:
        response = Response(asset("index.html"), media_type="text/html; charset=utf-8")
        if self.sessions.get(request.cookies.get(COOKIE)) is None:
            token, _ = self.sessions.create()
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = asset(name)
        if found is None:
            raise ClientError(404, "no such file")
        media = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[name.rsplit(".", 1)[1]]
        return Response(found, media_type=f"{media}; charset=utf-8")

    async def info(self, request: Request) -> Response:
        self.session(request)
        engine = self.engine
        return JSONResponse(
            {
                "model": engine.model_name,
                "input_size": list(engine.loaded.input_size),
                "methods": [asdict(info) for info in engine.methods.values()],
                "classes": engine.class_names,
                "colormaps": self.colormaps,
                "box_rules": BOX_RULES,
                "samples": list(self.photos),
                "curve_steps": self.curve_steps or engine.loaded.input_size[0],
                "curve_step_choices": sorted(
                    set(CURVE_STEPS) | {self.curve_steps or engine.loaded.input_size[0]}, reverse=True
                ),
                "max_megapixels": engine.max_pixels / 1e6,
                "reports": self.reports is not None,
            }
        )

    def _describe(self, identifier: str, picture: Picture) -> dict[str, Any]:
        return {
            "id": identifier,
            "name": picture.name,
            "width": picture.image.width,
            "height": picture.image.height,
            "view": {"width": picture.view.width, "height": picture.view.height},
            "top": [asdict(found) for found in self.engine.top_classes(picture)],
        }

    async def _open(self, request: Request, image: Image.Image, name: str) -> Response:
        session = self.session(request)
        picture = await run_in_threadpool(self.engine.picture, image, name)
        return JSONResponse(self._describe(session.add(picture), picture))

    async def upload(self, request: Request) -> Response:
        """The image in the request body (its name in the X-Filename header)."""
        self.session(request)
        name = safe_name(unquote(request.headers.get("x-filename", "")))
        declared = request.headers.get("content-length", "")
        if is_number(declared) and int(declared) > MAX_UPLOAD_BYTES:
            raise ClientError(413, f"{name} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise ClientError(413, f"{name} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
            chunks.append(chunk)
        try:
            image = await run_in_threadpool(self.engine.decode, b"".join(chunks), name)
        except NotAnImage as error:
            raise ClientError(400, str(error)) from None
        return await self._open(request, image, name)

    async def sample(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.photos:
            raise ClientError(404, f"no sample photo of that name; choose from {', '.join(self.photos)}")
        return await self._open(request, self.photos[name], f"{name}.png")

    async def thumbnail(self, request: Request) -> Response:
        found = self.thumbnails.get(request.path_params["name"])
        if found is None:
            raise ClientError(404, "no sample photo of that name")
        return Response(found, media_type="image/jpeg")

    async def view(self, request: Request) -> Response:
        picture = self.picture(request)
        return Response(await run_in_threadpool(_jpeg, picture.view), media_type="image/jpeg")

    async def saliency(self, request: Request) -> Response:
        """A method's map at the screen copy's size (16-bit values, base64) with its boxes."""
        picture, method = self.picture(request), self.method(request)
        target = self.target(request, picture)
        computed, cached = await self.computed(picture, method, target)
        view = await run_in_threadpool(self.engine.view_map, picture, computed)
        scale = float(np.percentile(view, 99.5))
        values = np.rint(np.clip(view, 0, 1) * 65535).astype("<u2")
        shown = self.engine.prediction(picture, target)
        return JSONResponse(
            {
                "method": method,
                "target": target,
                "target_name": shown.name,
                "probability": shown.probability,
                "class_dependent": computed.target is not None,
                "width": view.shape[1],
                "height": view.shape[0],
                "scale": scale,
                "values": base64.b64encode(values.tobytes()).decode("ascii"),
                "boxes": computed.boxes,
                "settings": computed.settings,
                "choices": computed.choices,
                "seconds": round(computed.seconds, 3),
                "cached": cached,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _file_name(self, picture: Picture, method: str, target: int, suffix: str) -> str:
        return f"{picture.stem}_{method}_class{target}.{suffix}"

    async def download(self, request: Request) -> Response:
        """`.npy` (the map at the image's size) or `.png` (the overlay) of one method."""
        picture, method = self.picture(request), self.method(request)
        target = self.target(request, picture)
        kind = request.path_params["kind"]
        if kind not in ("npy", "png"):
            raise ClientError(404, "maps download as map.npy or map.png")
        computed, _ = await self.computed(picture, method, target)
        name = self._file_name(picture, method, target, kind)
        if kind == "npy":
            body = await run_in_threadpool(self.engine.map_npy, picture, computed)
            media = "application/octet-stream"
        else:
            colormap = request.query_params.get("colormap", "inferno")
            if colormap not in COLORMAPS:
                raise ClientError(400, f"unknown colour map; choose from {', '.join(COLORMAPS)}")
            try:
                alpha = float(request.query_params.get("alpha", "0.6"))
            except ValueError:
                raise ClientError(400, "opacity must be a number in [0, 1]") from None
            if not math.isfinite(alpha) or not 0 <= alpha <= 1:
                raise ClientError(400, "opacity must be a number in [0, 1]")
            body = await run_in_threadpool(self.engine.overlay_png, picture, computed, alpha, colormap)
            media = "image/png"
        return Response(
            body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    async def faithfulness(self, request: Request) -> Response:
        """Deletion and insertion curves of one method's map for the class."""
        picture, method = self.picture(request), self.method(request)
        target, steps = self.target(request, picture), self.steps(request)
        computed, _ = await self.computed(picture, method, target)
        key = (self.engine.map_key(picture, method, target), target, steps)
        try:
            curves, cached = await run_in_threadpool(
                self.curves.get_or_compute, key, lambda: self.engine.curves(picture, computed, target, steps)
            )
        except SalmapError as error:
            raise ClientError(400, str(error)) from None
        return JSONResponse({**asdict(curves), "cached": cached, "method": method, "target": target})

    async def results(self, request: Request) -> Response:
        """`results.json` for the methods named in `?methods=` and the class."""
        picture = self.picture(request)
        target = self.target(request, picture)
        names = [name for name in request.query_params.get("methods", "").split(",") if name]
        unknown = [name for name in names if name not in self.engine.methods]
        if unknown or not names:
            raise ClientError(400, f"name methods among {', '.join(self.engine.methods)}")
        computed = [(await self.computed(picture, name, target))[0] for name in names]
        files = {
            name: tuple(self._file_name(picture, name, target, suffix) for suffix in ("npy", "png"))
            for name in names
        }
        steps = self.steps(request)
        curves = {}
        for name in names:
            found = self.curves.get((self.engine.map_key(picture, name, target), target, steps))
            if found is not None:
                curves[name] = found
        document = self.engine.results(picture, computed, target, files, curves)
        return Response(
            json.dumps(document, indent=2, default=str) + "\n",
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{picture.stem}_results.json"'},
        )

    async def report_list(self, request: Request) -> Response:
        self.session(request)
        if self.reports is None:
            raise ClientError(404, "no report folder: start the page with --report DIR")
        return JSONResponse(
            {
                "root": self.reports.root.name,
                "groups": self.engine.report_groups(),
                "reports": [
                    {"folder": report.folder, "metrics": report.metrics, "figures": report.figures}
                    for report in self.reports.reports
                ],
            }
        )

    async def report_figure(self, request: Request) -> Response:
        self.session(request)
        raw = request.path_params["number"]
        path = self.reports.figure(int(raw)) if self.reports is not None and is_number(raw) else None
        if path is None:
            raise ClientError(404, "no such figure")
        return FileResponse(path, media_type="image/png")
