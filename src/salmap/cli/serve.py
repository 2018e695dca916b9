"""`salmap serve`: a local web page to explore saliency maps."""

from __future__ import annotations

import argparse
import socket

from salmap.errors import SalmapError

from .common import add_explainer_arguments, add_model_arguments, check_device, method_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web page to explore the maps",
        description="Serve a page on this machine: open or upload an image, see its top-5 classes, "
        "every chosen method's map side by side for any class, deletion and insertion curves with "
        "their AUCs, and download maps and results.json. Works offline.",
    )
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    parser.add_argument(
        "--report", default=None, metavar="DIR", help="an `evaluate` or `benchmark` output folder to show"
    )
    parser.add_argument(
        "--curve-steps",
        type=int,
        default=None,
        help="steps of the deletion and insertion curves (default: the input height, as in RISE)",
    )
    add_explainer_arguments(parser)
    parser.set_defaults(run=run)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise SalmapError(
            f"cannot listen on {host}:{port}: {error.strerror}; choose another --port"
        ) from None
    sock.listen(128)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from salmap.serve import Engine, create_app, read_reports

    if not 0 <= args.port <= 65535:
        raise SalmapError(f"--port must be in 0..65535, got {args.port}")
    if args.curve_steps is not None and args.curve_steps < 1:
        raise SalmapError(f"--curve-steps must be >= 1, got {args.curve_steps}")
    reports = read_reports(args.report) if args.report else None
    engine = Engine.load(
        args.model,
        arch=args.arch,
        device=check_device(args.device),
        layer=args.layer,
        output_key=args.output_key,
        checkpoint=args.checkpoint,
        settings=method_settings(args),
    )
    local = args.host in LOOPBACK
    app = create_app(
        engine, reports, args.curve_steps, allowed_hosts=(*LOOPBACK, "[::1]") if local else ("*",)
    )
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    if not local:
        print(f"salmap serve: listening on {args.host}: anyone who can reach this machine can use the page")
    print(f"salmap serve: {engine.model_name} with {', '.join(engine.methods)}", flush=True)
    print(f"salmap serve: open http://{shown}:{port}/ (Ctrl+C stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0
