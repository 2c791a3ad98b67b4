"""``attnmel serve``."""

from __future__ import annotations

import argparse

from attnmel.cli.options import add_trust_pickle
from attnmel.serving.app import ServiceSettings, serve


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="HTTP service and web page: probability plus attention maps")
    parser.add_argument("--checkpoint", help="best.safetensors or a run folder (default: the demo model)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body accepted (MB)")
    parser.add_argument("--max-pixels", type=int, default=ServiceSettings.max_pixels,
                        help="largest image accepted, judged from its header before decoding")
    parser.add_argument("--max-batch", type=int, default=ServiceSettings.max_batch,
                        help="images per forward pass when requests arrive together (1: no batching)")
    parser.add_argument("--batch-wait-ms", type=float, default=ServiceSettings.batch_wait_ms,
                        help="how long a batch waits for more requests")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-access-log", action="store_true")
    add_trust_pickle(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServiceSettings(max_upload_bytes=int(args.max_upload_mb * 1_000_000), max_pixels=args.max_pixels,
                               max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
    serve(args.checkpoint, args.host, args.port, settings=settings, trust_pickle=args.trust_pickle,
          device=args.device, access_log=not args.no_access_log)
    return 0
