"""Measure one streamed copy in a clean process: bytes, seconds and peak RSS above the pre-copy baseline.

Run as `python -m local.copy_probe --size BYTES --s3-endpoint URL`; prints one JSON line. S3 is a moto server in
another process, so its memory is not counted; the output is generated on the fly by a local HTTP server thread.
Used by the copy memory test and by the copy benchmark.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from denoise_pipeline.transfer import OutputCopier, UrlPolicy

CHUNK = bytes(range(256)) * 4096  # 1 MiB


def _serve(size: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            length = len(CHUNK) if self.path == "/warm-up" else size  # a small warm-up keeps the RSS baseline honest
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            sent = 0
            while sent < length:
                piece = CHUNK[: min(len(CHUNK), length - sent)]
                self.wfile.write(piece)
                sent += len(piece)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--bucket", default="copy-probe")
    parser.add_argument("--baseline-file", help="also time boto3 upload_file of a file of the same size")
    args = parser.parse_args()

    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=args.bucket)
    server = _serve(args.size)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    copier = OutputCopier(s3, UrlPolicy([origin]), max_bytes=args.size + 1)
    copier.copy(f"{origin}/warm-up", args.bucket, "warm-up", content_type="audio/wav", metadata={})  # imports, pools
    s3.delete_object(Bucket=args.bucket, Key="warm-up")
    before = _max_rss_mib()
    started = time.perf_counter()
    copied = copier.copy(f"{origin}/output", args.bucket, "output", content_type="audio/wav", metadata={})
    elapsed = time.perf_counter() - started
    head = s3.head_object(Bucket=args.bucket, Key="output")
    result: dict[str, float] = {
        "bytes": copied,
        "stored_bytes": head["ContentLength"],
        "seconds": elapsed,
        "rss_before_mib": before,
        "rss_peak_mib": _max_rss_mib(),
    }
    if args.baseline_file:  # after the copy, so its buffers do not raise the copy's RSS baseline
        s3.delete_object(Bucket=args.bucket, Key="output")
        started = time.perf_counter()
        s3.upload_file(args.baseline_file, args.bucket, "baseline")
        result["baseline_seconds"] = time.perf_counter() - started
    print(json.dumps(result))
    server.shutdown()


if __name__ == "__main__":
    main()
