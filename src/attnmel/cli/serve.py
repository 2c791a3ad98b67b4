"""``attnmel serve``."""

from __future__ import annotations

import argparse

from attnmel.cli.options import (
    add_checkpoint,
    add_device,
    add_trust_pickle,
    decimal,
    port_number,
    positive_int,
    whole_number,
)

#: the library's defaults (``attnmel.serving.app.ServiceSettings``; a test keeps them equal)
MAX_PIXELS = 120_000_000
MAX_BATCH = 16


def register(parser: argparse.ArgumentParser) -> None:
    add_checkpoint(parser, ensemble=False)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=port_number, default=8000)
    parser.add_argument("--max-upload-mb", type=decimal(0, above=True, unit=" MB"), default=20.0, help="largest request body accepted (MB)")
    parser.add_argument("--upload-budget-mb", type=decimal(0, above=True, unit=" MB"), default=128.0,
                        help="request bodies all uploads in flight may hold together (MB); beyond it an upload gets 503")
    parser.add_argument("--max-pixels", type=whole_number(1, MAX_PIXELS), default=MAX_PIXELS,
                        help="largest image accepted, judged from its header before decoding (default and most: "
                             "%(default)s)")
    parser.add_argument("--max-batch", type=positive_int, default=MAX_BATCH,
                        help="images per forward pass when requests arrive together (1: no batching)")
    parser.add_argument("--batch-wait-ms", type=decimal(0, above=False, unit=" ms"), default=0.0,
                        help="how long a batch waits for more requests")
    add_device(parser)
    parser.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-access-log", action="store_true")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from attnmel.serving.app import ServiceSettings, serve

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServiceSettings(max_upload_bytes=int(args.max_upload_mb * 1_000_000), max_pixels=args.max_pixels,
                               max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                               upload_budget_mb=args.upload_budget_mb)
    serve(args.checkpoint, args.host, args.port, settings=settings, trust_pickle=args.trust_pickle,
          device=args.device, access_log=not args.no_access_log)
    return 0
