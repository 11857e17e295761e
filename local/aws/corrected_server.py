"""moto's standalone HTTP server (`python -m moto.server`) with the corrections the local stack applies
(local.aws.emulator.correct_moto), for tests and benchmarks that keep the emulated S3 in a process of its own so
that its memory and CPU are not counted as theirs: `python -m local.aws.corrected_server -H 127.0.0.1 -p PORT`."""

from __future__ import annotations

from moto.server import main

from .emulator import correct_moto

if __name__ == "__main__":
    correct_moto()
    main()
