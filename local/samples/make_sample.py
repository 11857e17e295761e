"""Regenerate the bundled demo sample: espeak-ng speech mixed with a real recorded noise.

    python local/samples/make_sample.py [--snr-db 2.5]

Needs the ``espeak-ng`` program (Debian: ``apt-get install espeak-ng``) and the project's ``local`` extra (av,
soundfile, numpy). Writes, next to this file, 48 kHz mono PCM16:

* ``clean_speech.wav`` - the speech alone, at exactly the level it has inside the mix (the SI-SDR reference);
* ``noisy_speech.wav`` - speech + ``noise_freesound_573577.wav`` (looped to length) at the requested SNR.

espeak-ng output can differ slightly between its versions; the committed files were made with espeak-ng 1.51.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

HERE = Path(__file__).resolve().parent
RATE = 48_000
NOISE = HERE / "noise_freesound_573577.wav"
TEXT = (
    "Welcome to the denoise demo. There is a lot of noise behind my voice. If the filter works, you will hear only me."
)
LEAD_IN_S = 0.4
"""Noise-only lead-in and tail: the demo's first half second shows the noise floor going away."""


def synthesize(text: str, wav_path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(wav_path), text], check=True)  # noqa: S603


def load_48k_mono(path: Path) -> npt.NDArray[np.float64]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks: list[npt.NDArray[np.float32]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray()[0] for out in resampler.resample(None))
    return np.concatenate(chunks).astype(np.float64)


def mix(
    speech: npt.NDArray[np.float64], noise: npt.NDArray[np.float64], snr_db: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (clean, noisy): speech padded with a lead-in/tail, noise looped to length at ``snr_db``."""
    pad = np.zeros(int(LEAD_IN_S * RATE))
    clean = np.concatenate([pad, speech, pad])
    reps = int(np.ceil(len(clean) / len(noise)))
    bed = np.tile(noise, reps)[: len(clean)]
    # SNR = power of the synthesized utterance (its own short pauses included, the added lead-in/tail not) over
    # the noise power.
    speech_power = float(np.mean(speech**2))
    bed = bed * np.sqrt(speech_power / (float(np.mean(bed**2)) * 10 ** (snr_db / 10)))
    noisy = clean + bed
    scale = 0.89 / float(np.max(np.abs(noisy)))  # peak at -1 dBFS, same gain on both files
    return clean * scale, noisy * scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snr-db", type=float, default=2.5, help="speech-to-noise ratio of the mix (default 2.5)")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        synthesize(TEXT, raw)
        speech = load_48k_mono(raw)
    clean, noisy = mix(speech, load_48k_mono(NOISE), args.snr_db)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(args.out_dir / "clean_speech.wav", clean, RATE, subtype="PCM_16")
    sf.write(args.out_dir / "noisy_speech.wav", noisy, RATE, subtype="PCM_16")
    print(f"{len(clean) / RATE:.2f} s at {args.snr_db} dB SNR -> {args.out_dir}")


if __name__ == "__main__":
    main()
