"""``python -m local.provider``: run the local MusicGPT-compatible server until interrupted.

Options default to ``LOCAL_MUSICGPT_*`` environment variables (see ``ProviderConfig``), then to built-in defaults.
Prints the base URL (``http://127.0.0.1:PORT``) on the first line of stdout; the API base is that plus
``/api/public/v1``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from local.provider.server import API_PREFIX, LocalMusicGPT, ProviderConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.provider", description=__doc__)
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 = any free one (default 0)")
    parser.add_argument("--api-key", help="the key clients must send in Authorization")
    parser.add_argument("--max-parallel", type=int, help="jobs in flight before 429 (default 2)")
    parser.add_argument("--workers", type=int, help="denoising threads (default min(max-parallel, CPUs))")
    parser.add_argument("--attenuation-limit-db", type=float, help="DeepFilterNet attenuation limit (default 100)")
    parser.add_argument("--eta", type=int, help="eta answered on submission, seconds")
    parser.add_argument("--credit-estimate", type=float, help="credit_estimate / conversion_cost per job")
    parser.add_argument("--output-dir", type=Path, help="where outputs are kept (default: a temp dir)")
    parser.add_argument("--no-webhooks", action="store_true", help="process jobs but never deliver webhooks")
    parser.add_argument("--retry-after", type=int, help="send Retry-After: N with 429 answers")
    parser.add_argument("--min-job-seconds", type=float, help="make each job last at least this long")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and job events")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    config = ProviderConfig.from_env(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_parallel=args.max_parallel,
        workers=args.workers,
        attenuation_limit_db=args.attenuation_limit_db,
        eta=args.eta,
        credit_estimate=args.credit_estimate,
        output_dir=args.output_dir,
        deliver_webhooks=False if args.no_webhooks else None,
        retry_after=args.retry_after,
        min_job_seconds=args.min_job_seconds,
        log_requests=True if args.verbose else None,
    )
    provider = LocalMusicGPT(config).start()
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(provider.base_url, flush=True)
    print(
        f"API base {provider.base_url}{API_PREFIX}, outputs in {provider.output_dir}, "
        f"max_parallel={config.max_parallel}, webhooks {'on' if config.deliver_webhooks else 'off'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        done.wait()
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
