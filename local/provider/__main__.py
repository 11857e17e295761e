"""``python -m local.provider``: run the local MusicGPT-compatible server until interrupted.

Every option is a ``ProviderConfig`` field: a flag here, a ``LOCAL_MUSICGPT_*`` environment variable, a default (flags
win over the environment). stdout: the base URL (``http://127.0.0.1:PORT``; the API base is that plus
``/api/public/v1``) on the first line; with behaviour https, the outputs' base URL on the second and the CA bundle's
path on the third.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from local.provider.config import BEHAVIOUR_SUMMARY, ProviderConfig, add_arguments
from local.provider.server import LocalMusicGPT


def _parser() -> argparse.ArgumentParser:
    behaviours = "\n".join(f"  {name.value:<12} {text}" for name, text in BEHAVIOUR_SUMMARY.items())
    parser = argparse.ArgumentParser(
        prog="python -m local.provider",
        description=__doc__,
        epilog=f"behaviours (--behaviour a,b,...):\n{behaviours}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        provider = LocalMusicGPT(ProviderConfig.from_env(**vars(args)))
    except ValueError as exc:  # a bad environment variable, or options that do not go together
        parser.error(str(exc))
    config = provider.config
    logging.basicConfig(
        level=logging.INFO if config.log_requests else logging.WARNING, format="%(levelname)s %(message)s"
    )
    provider.start()
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(provider.base_url, flush=True)
    if provider.ca_bundle_path is not None:
        print(provider.output_base_url, provider.ca_bundle_path, sep="\n", flush=True)
    print(
        f"API base {provider.api_base_url}, outputs {provider.output_base_url} from {provider.output_dir}, "
        f"max_parallel={config.max_parallel}, webhooks {'on' if config.deliver_webhooks else 'off'}, "
        f"behaviours {','.join(sorted(config.behaviours))}",
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
