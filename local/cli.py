"""`denoise-local`: run the pipeline offline.

up               start the local stack and keep it running (Ctrl-C stops it)
drop FILE...     upload files to the running stack's input bucket and follow each job
jobs             list jobs by state (queued jobs with their position)
fetch JOB DIR    download a completed job's outputs
demo             up + drop the bundled noisy sample + wait + fetch + report the noise reduction
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from denoise_pipeline.adapters.job_store import JobStore
from denoise_pipeline.clock import from_iso, utc_now
from denoise_pipeline.domain.job import Job, JobStatus
from denoise_pipeline.domain.outputs import OutputName
from denoise_pipeline.domain.source import SourceObject
from local.provider.config import Behaviour, converter

SAMPLES = Path(__file__).resolve().parent / "samples"
STATE_DIR = Path(".local-stack")
LIST_LIMIT = 10_000
LISTED_STATES = (
    JobStatus.QUEUED,
    JobStatus.RECEIVED,
    JobStatus.SUBMITTED,
    JobStatus.COPYING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.TIMED_OUT,
)


class CliError(Exception):
    """Shown to the user as one line."""


@dataclass(frozen=True)
class Endpoints:
    moto_url: str
    input_bucket: str
    output_bucket: str
    jobs_table: str
    credentials: dict[str, str]
    """The emulation's administrator key: IAM is enforced, and an unknown key is refused."""

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Endpoints:
        return cls(
            state["moto_url"], state["input_bucket"], state["output_bucket"], state["jobs_table"], state["credentials"]
        )

    @property
    def _keys(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": self.credentials["AWS_SECRET_ACCESS_KEY"],
        }

    @classmethod
    def running(cls, state_dir: Path = STATE_DIR) -> Endpoints:
        path = state_dir / "state.json"
        if not path.exists():
            raise CliError("no local stack is running here; start one with `denoise-local up`")
        return cls.from_state(json.loads(path.read_text(encoding="utf-8")))

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            **self._keys,
        )

    def jobs(self) -> JobStore:
        """The job store the Lambdas use, pointed at the local stack's table."""
        resource = boto3.resource(  # type: ignore[call-overload]
            "dynamodb",
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            **self._keys,
        )
        return JobStore(resource.Table(self.jobs_table))


def upload(endpoints: Endpoints, path: Path, key: str | None = None) -> str:
    """Put a file into the input bucket; returns the job id the pipeline will give it."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    key = key or f"uploads/{path.name}"
    with path.open("rb") as body:
        put = endpoints.client("s3").put_object(Bucket=endpoints.input_bucket, Key=key, Body=body)
    source = SourceObject(
        endpoints.input_bucket, key, path.stat().st_size, put["ETag"].strip('"'), put.get("VersionId", "")
    )
    if source.skip_reason:
        raise CliError(f"{path}: {source.skip_reason}; the pipeline ignores it")
    return source.job_id


def follow(endpoints: Endpoints, job_ids: Sequence[str], timeout: float) -> dict[str, Job]:
    """Poll jobs until every one is final; prints a line per state change with elapsed time and eta."""
    store = endpoints.jobs()
    started = time.monotonic()
    last: dict[str, str] = {}
    jobs: dict[str, Job | None] = {}
    while time.monotonic() - started < timeout:
        for job_id in job_ids:
            job = jobs[job_id] = store.find(job_id)
            state = job.status.value if job else "WAITING FOR EVENT"
            if last.get(job_id) != state:
                last[job_id] = state
                eta = f"  eta {job.eta}s" if job and job.eta is not None else ""
                print(
                    f"[{time.monotonic() - started:6.1f}s] {job.source_key if job else job_id}  {state}{eta}",
                    flush=True,
                )
        finished = {job_id: job for job_id, job in jobs.items() if job is not None and job.is_final}
        if len(finished) == len(job_ids):
            return finished
        time.sleep(0.25)
    pending = [job_id for job_id, job in jobs.items() if job is None or not job.is_final]
    raise CliError(f"timed out after {timeout:.0f}s waiting for {len(pending)} job(s): {', '.join(pending)}")


def list_jobs(endpoints: Endpoints) -> Iterator[tuple[Job, int | None]]:
    """Jobs per state through the status index (no Scan), oldest first; queued jobs carry their position."""
    store = endpoints.jobs()
    for state in LISTED_STATES:
        for position, job in enumerate(store.list_by_status(state, limit=LIST_LIMIT), start=1):
            yield job, position if state is JobStatus.QUEUED else None


def fetch(endpoints: Endpoints, job_id: str, directory: Path) -> list[Path]:
    job = endpoints.jobs().find(job_id)
    if job is None:
        raise CliError(f"no job {job_id}")
    if job.status is not JobStatus.COMPLETED:
        raise CliError(f"job {job_id} is {job.status.value}, not COMPLETED")
    directory.mkdir(parents=True, exist_ok=True)
    s3 = endpoints.client("s3")
    paths = []
    for name in OutputName:
        key = job.output_keys.get(name.value)
        if key:
            target = directory / name.file_name
            s3.download_file(job.output_bucket or endpoints.output_bucket, key, str(target))
            paths.append(target)
    return paths


def print_jobs(endpoints: Endpoints) -> None:
    rows = list(list_jobs(endpoints))
    if not rows:
        print("no jobs yet")
        return
    print(f"{'JOB ID':32}  {'STATE':10} {'POS':>4} {'IN STATE':>8}  SOURCE KEY / REASON")
    now = utc_now()
    for job, position in rows:
        age = f"{(now - from_iso(job.status_at)).total_seconds():.0f}s" if job.status_at else ""
        reason = job.error_message or job.queue_reason or ""
        detail = job.source_key + (f"  ({reason})" if reason else "")
        print(f"{job.job_id:32}  {job.status.value:10} {position or '':>4} {age:>8}  {detail}")


def noise_reduction_report(clean: Path, noisy: Path, cleaned: Path) -> tuple[float, float]:
    """SI-SDR of the noisy input and of the cleaned output, both against the clean reference."""
    import soundfile

    from local.provider.metrics import si_sdr

    reference, _ = soundfile.read(clean, dtype="float32", always_2d=True)
    before, _ = soundfile.read(noisy, dtype="float32", always_2d=True)
    after, _ = soundfile.read(cleaned, dtype="float32", always_2d=True)
    return si_sdr(reference[:, 0], before[:, 0]), si_sdr(reference[:, 0], after[:, 0])


# ---------------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    from local.stack import LocalStack, LocalStackConfig

    config = LocalStackConfig(
        max_parallel_jobs=args.max_parallel, state_dir=args.state_dir, provider_behaviours=args.behaviour
    )
    stack = LocalStack(config).start()
    state = stack.state()
    print("local stack running (Ctrl-C to stop)")
    for name in ("moto_url", "provider_url", "gateway_url", "input_bucket", "output_bucket", "jobs_table"):
        print(f"  {name:14} {state[name]}")
    for function, path in state["logs"].items():
        print(f"  {'log':14} {path}  ({function})")
    for schedule, timing in state["schedules"].items():
        print(f"  {'schedule':14} {schedule}: {timing}")
    print(f"\nnot emulated here (deployed by CloudFormation only): {', '.join(state['not_emulated'])}")
    print("\nIAM is enforced: use the emulation's administrator key with the AWS CLI (it refuses unknown keys):")
    for name, value in {
        **state["credentials"],
        "AWS_ENDPOINT_URL": state["moto_url"],
        "AWS_REGION": state["region"],
    }.items():
        print(f"  export {name}={value}")
    print(f"  aws s3 cp file.wav s3://{state['input_bucket']}/")
    print("or: denoise-local drop file.wav")
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        stack.stop()
        print("stopped")
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    endpoints = Endpoints.running(args.state_dir)
    job_ids = [upload(endpoints, Path(path)) for path in args.files]
    jobs = follow(endpoints, job_ids, args.timeout)
    return 0 if all(job.status is JobStatus.COMPLETED for job in jobs.values()) else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    print_jobs(Endpoints.running(args.state_dir))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    for path in fetch(Endpoints.running(args.state_dir), args.job_id, Path(args.directory)):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from local.stack import LocalStack, LocalStackConfig

    noisy, clean = SAMPLES / "noisy_speech.wav", SAMPLES / "clean_speech.wav"
    out = Path(args.output)
    print("starting the local stack (moto, local MusicGPT with DeepFilterNet 3, webhook gateway)...")
    with LocalStack(LocalStackConfig(state_dir=args.state_dir, provider_behaviours=args.behaviour)) as stack:
        endpoints = Endpoints.from_state(stack.state())
        print(f"dropping {noisy.name} into s3://{endpoints.input_bucket}/demo/")
        job_id = upload(endpoints, noisy, f"demo/{noisy.name}")
        job = follow(endpoints, [job_id], args.timeout)[job_id]
        if job.status is not JobStatus.COMPLETED:
            raise CliError(f"job {job_id} ended {job.status.value}: {job.error_message}")
        listed = endpoints.client("s3").list_objects_v2(Bucket=endpoints.output_bucket, Prefix="denoised/demo/")
        stored = sorted(obj["Key"] for obj in listed.get("Contents", []))
        if len(stored) != len(OutputName):
            raise CliError(f"expected {len(OutputName)} outputs in the output bucket, found {stored}")
        paths = fetch(endpoints, job_id, out)
    before, after = noise_reduction_report(clean, noisy, out / OutputName.NO_NOISE_WAV.file_name)
    print(f"\njob {job_id} COMPLETED; outputs in s3://{endpoints.output_bucket}/denoised/demo/noisy_speech/")
    for path in paths:
        print(f"  {path}  ({path.stat().st_size:,} bytes)")
    print(
        f"SI-SDR against the clean speech: noisy {before:.1f} dB -> cleaned {after:.1f} dB ({after - before:+.1f} dB)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="denoise-local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where the running stack leaves its state")
    parser.add_argument(
        "--behaviour",
        type=converter(frozenset[Behaviour]),
        help="how the local provider behaves, comma-separated (default: LOCAL_MUSICGPT_BEHAVIOURS, else documented): "
        + ", ".join(behaviour.value for behaviour in Behaviour),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local stack")
    up.add_argument("--max-parallel", type=int, default=2, help="MaxParallelJobs (and the provider's limit)")
    up.set_defaults(run=cmd_up)
    drop = sub.add_parser("drop", help="upload files and follow their jobs")
    drop.add_argument("files", nargs="+")
    drop.add_argument("--timeout", type=float, default=600)
    drop.set_defaults(run=cmd_drop)
    sub.add_parser("jobs", help="list jobs").set_defaults(run=cmd_jobs)
    fetch_cmd = sub.add_parser("fetch", help="download a job's outputs")
    fetch_cmd.add_argument("job_id")
    fetch_cmd.add_argument("directory")
    fetch_cmd.set_defaults(run=cmd_fetch)
    demo = sub.add_parser("demo", help="run the whole pipeline on the bundled sample")
    demo.add_argument("--output", default="demo-output")
    demo.add_argument("--timeout", type=float, default=180)
    demo.set_defaults(run=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
