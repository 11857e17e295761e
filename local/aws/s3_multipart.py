"""Make moto's multipart uploads cost what real S3's do: a part copy reads its range, a completion reads each part once.

UploadPartCopy. moto's `S3Backend.upload_part_copy` reads the entire source object (`FakeKey.value`: the key's
spooled temporary file, read whole under the key's lock) for every part, then slices the requested range out of
it. A multipart copy of an object in n parts therefore reads n times the object: promoting a 1 GiB output in
512 MiB parts reads 2 GiB, and the parts queue for the source key's lock while each reads all of it. Measured on
this machine (2 cores, busy): a promotion of 1 GiB as the output copier makes it (boto3's managed copy, 512 MiB
parts) took 78 s against the emulator's moto server, 39 s with this correction: 13 s for the two part copies, 26 s
for moto's CompleteMultipartUpload. Here the backend seeks to the range's first byte and reads the range's bytes
alone, under the same lock; lookups, errors, a missing range meaning the whole object, and the part stored
(`multipart.set_part`) are moto's own.

CompleteMultipartUpload. moto's `FakeMultipart.complete` reads every part whole twice (`part.value`), once into a
bytearray of the whole object and once into its checksum builder, which, for a FULL_OBJECT checksum (the default:
CRC64NVME when the upload names no algorithm, so every upload of ours), extends a second bytearray of the whole
object; it then copies both (`bytes(...)`) to checksum the one and return the other, and `put_object` writes that
into the new key's spooled temporary file. Completing 1 GiB thus moved about 8 GiB through memory and held up to
four copies of it at once (48 MiB of Python allocations to complete 12 MiB; the emulator's peak RSS was 4.6 GiB in
the runs below). Here `complete` checks the listed parts exactly as moto does (InvalidPart, EntityTooSmall,
MalformedXML, in moto's order, before any byte is read), then reads each part once, in pieces of at most 16 MiB
under the part's lock, writing each piece to a spooled temporary file like a key's own and feeding it to the
checksum (moto's algorithm, type, defaults and fallbacks, computed incrementally); each part is disposed of as soon
as it is read (moto disposes of them all once the upload is complete), so the next part's bytes go to the memory it
held; and the new key (`put_object`, unchanged) takes that file over as its value instead of having the bytes
copied into one of its own. The multipart ETag, metadata, tags, ACL, versioning, storage class, encryption and
notifications are moto's own. Measured in the emulator's server (2 cores, shared), 1 GiB: `upload_file` in 8 MiB
parts 16-20 s, 5.0 s of it completing, now 10-12 s, 0.8-1.2 s completing; the promotion above (two 512 MiB part
copies) 16-19 s, 8.8 s completing, now 11-15 s, 3.9-5.4 s completing; peak RSS 4.6 GiB, now 2.5-2.7 GiB, set by the
two part copies. What a completion still costs is writing the object once to a new file: on this virtual machine, page
cache the guest has not touched lately costs 5-9 s/GiB to write (`dd` of 1 GiB: 4-7 s, then 0.4 s into the pages
just freed), and the first part is the one written to such pages. Keeping the parts' files as the object's (no
write at all, about 0.4 s/GiB to checksum) would hold one open file per part for the key's lifetime; not done.
A failure while the parts are read (an I/O error, a full disk) leaves the upload without the parts read so far: it
cannot be completed again, only aborted, where S3 would not have failed at all.

A value larger than a key's in-memory buffer (moto's default: 5 MiB less 1 KiB), such as a part of UploadPart or
UploadPartCopy (ours are 8 MiB and more) or the body of a PutObject or CopyObject, went into the buffer's memory
first and was copied to the key's file when the buffer overflowed; here it goes to the file at once. Measured with
the copy benchmark (2 runs each way, interleaved): the copy job of 2.2 GiB 20.4-21.0 s, now 17.8-18.2 s; its
promotion 11.3-12.3 s, now 8.0-8.3 s.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import moto.s3.models
import moto.s3.utils
from moto.s3.exceptions import EntityTooSmall, InvalidPart, InvalidPartOrder, MalformedXML
from moto.s3.models import FakeKey, FakeMultipart, MultipartChecksumBuilder, S3Backend
from moto.s3.utils import compute_checksum
from moto.settings import get_s3_default_key_buffer_size
from moto.utilities.utils import md5_hash

_UPLOAD_PART_COPY = S3Backend.upload_part_copy
_COMPLETE = FakeMultipart.complete
_VALUE: property = vars(FakeKey)["value"]
_PIECE = 16 * 1024 * 1024
"""How much of a part is in memory at once while completing (moto reads 16 MiB at a time for an ETag too)."""


# ---------------------------------------------------------------- UploadPartCopy: read the range alone


def _read_range(key: FakeKey, start_byte: int, end_byte: int) -> bytes:
    """`key.value[start_byte : end_byte + 1]`, reading those bytes only."""
    if start_byte < 0 or end_byte < 0:  # slice semantics counting from the end; moto's HTTP layer never passes them
        return key.value[start_byte : end_byte + 1]
    buffer = key._value_buffer  # noqa: SLF001 - moto reads a key only whole (FakeKey.value)
    with key.lock:
        buffer.seek(start_byte)
        return buffer.read(max(0, end_byte + 1 - start_byte))


@functools.wraps(_UPLOAD_PART_COPY)
def _ranged_upload_part_copy(
    self: S3Backend,
    dest_bucket_name: str,
    multipart_id: str,
    part_id: int,
    src_bucket_name: str,
    src_key_name: str,
    src_version_id: str | None,
    start_byte: int | None,
    end_byte: int | None,
) -> FakeKey:
    dest_bucket = self.get_bucket(dest_bucket_name)
    multipart = dest_bucket.multiparts[multipart_id]

    # A missing source (None) fails as in moto, and so would a start without an end; moto's responses check the
    # source first (404) and pass a range as both ends or neither.
    src_key = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
    if start_byte is None:  # no range (or one moto's responses could not parse): the whole object
        return multipart.set_part(part_id, src_key.value)  # type: ignore[union-attr]  # see above
    return multipart.set_part(part_id, _read_range(src_key, start_byte, end_byte))  # type: ignore[arg-type]  # see above


def read_part_copy_ranges() -> None:
    """Process-wide and idempotent: moto's UploadPartCopy reads only the source bytes of the part it copies."""
    S3Backend.upload_part_copy = _ranged_upload_part_copy  # type: ignore[method-assign]


# ---------------------------------------------------------------- CompleteMultipartUpload: each part read once


class _Checksum(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    def __init__(self, crc: Callable[[bytes, int], int], width: int) -> None:
        self._crc = crc
        self._width = width
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = self._crc(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _running_checksum(algorithm: str) -> _Checksum:
    """moto's `compute_checksum(body, algorithm, encode_base64=False)` fed the body in pieces: the same algorithms,
    the same fallbacks (CRC32 for CRC32C without the crc32c package and for CRC64NVME without awscrt), SHA-256 for
    any other name."""
    if algorithm == "SHA1":
        return hashlib.sha1(usedforsecurity=False)
    if algorithm == "CRC32C":
        try:
            crc32c: Any = importlib.import_module("crc32c")
        except ImportError:
            return _Crc(binascii.crc32, 4)
        return _Crc(lambda data, value: int(crc32c.crc32c(data, value)), 4)
    if algorithm == "CRC32":
        return _Crc(binascii.crc32, 4)
    if algorithm == "CRC64NVME":
        if not moto.s3.utils.HAS_CRT:  # type: ignore[attr-defined]  # moto's own test for awscrt
            return _Crc(binascii.crc32, 4)
        checksums: Any = importlib.import_module("awscrt.checksums")
        return _Crc(checksums.crc64nvme, 8)
    return hashlib.sha256(usedforsecurity=False)


class _Assembled:
    """A completed object's bytes, already in a spooled temporary file like the one a key keeps its value in: the
    key `put_object` makes of it takes the file over (see `_set_value`) rather than copying the bytes."""

    def __init__(self, buffer: tempfile.SpooledTemporaryFile[bytes], size: int) -> None:
        self._buffer: tempfile.SpooledTemporaryFile[bytes] | None = buffer
        self.size = size

    def __len__(self) -> int:
        return self.size

    def take(self) -> tempfile.SpooledTemporaryFile[bytes]:
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            raise RuntimeError("a completed upload's bytes were given to a second key")
        return buffer

    def __del__(self) -> None:  # a completion that failed after the parts were read (an invalid storage class)
        if self._buffer is not None:
            self._buffer.close()


def _set_value(key: FakeKey, new_value: bytes | _Assembled) -> None:
    """moto's `FakeKey.value` setter, except that a key takes a completed upload's file over as its own, and that
    a value larger than the key's in-memory buffer goes to the key's file at once (moto wrote it to memory, then
    copied it to the file when the buffer overflowed: a part of 8 MiB against a 5 MiB buffer)."""
    if not isinstance(new_value, _Assembled):
        if len(new_value) > key._max_buffer_size:  # noqa: SLF001 - the spooled file's threshold
            key._value_buffer.rollover()  # noqa: SLF001
        _VALUE.__set__(key, new_value)
        return
    key._value_buffer.close()  # noqa: SLF001 - the empty file FakeKey.__init__ made before setting the value
    key._value_buffer = new_value.take()  # noqa: SLF001
    key.contentsize = new_value.size


def _listed_parts(multipart: FakeMultipart, body: Iterator[tuple[int, str]]) -> tuple[list[FakeKey], bytes]:
    """The parts the request lists and their MD5s concatenated, checked as moto's `FakeMultipart.complete` does, and
    in ascending order as S3 requires (moto's request parser means to refuse the rest but lets any order through,
    and a part listed twice would be read after it was disposed of)."""
    parts: list[FakeKey] = []
    md5s = bytearray()
    previous = 0
    for pn, etag in body:
        if pn <= previous:
            raise InvalidPartOrder()
        previous = pn
        part = multipart.parts.get(pn)
        part_etag = None
        if part is not None:
            part_etag = part.etag.replace('"', "")
            etag = etag.replace('"', "")
        if part is None or part_etag != etag:
            raise InvalidPart()
        minimum = moto.s3.models.S3_UPLOAD_PART_MIN_SIZE  # type: ignore[attr-defined]  # where moto reads it (tests patch it)
        if parts and parts[-1].contentsize < minimum:
            raise EntityTooSmall()
        md5s.extend(binascii.a2b_hex(part_etag))  # what moto's codecs "hex_codec" decoder calls
        parts.append(part)
    if not parts:
        raise MalformedXML
    return parts, bytes(md5s)


@functools.wraps(_COMPLETE)
def _complete_in_one_pass(
    self: FakeMultipart, body: Iterator[tuple[int, str]]
) -> tuple[_Assembled, str, tuple[str, str, int] | None]:
    parts, md5s = _listed_parts(self, body)
    # moto's defaults: CRC64NVME when the upload names no algorithm, COMPOSITE unless CRC64NVME or named.
    kind = MultipartChecksumBuilder(
        self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
    )
    composite = kind.checksum_type == "COMPOSITE"
    whole = _running_checksum(kind.checksum_algorithm)
    part_checksums = bytearray()

    in_memory = get_s3_default_key_buffer_size()  # what a key's own file keeps in memory (put_object sets no other)
    buffer = tempfile.SpooledTemporaryFile(in_memory)  # noqa: SIM115 - it outlives this call: the new key's value
    if sum(part.contentsize for part in parts) > in_memory:
        buffer.rollover()  # to disk at once, as the key's own file would, not through an in-memory copy first
    size = 0
    try:
        for part in parts:
            checksum = _running_checksum(kind.checksum_algorithm) if composite else whole
            source = part._value_buffer  # noqa: SLF001 - moto reads a key only whole (FakeKey.value)
            with part.lock:
                source.seek(0)
                left = part.contentsize  # asking for no more than is there: a read allocates what it is asked for
                while left > 0 and (piece := source.read(min(_PIECE, left))):
                    buffer.write(piece)
                    checksum.update(piece)
                    left -= len(piece)
                    size += len(piece)
                    del piece  # one piece in memory at a time: gone before the next read allocates the next
            # moto disposes of the parts once the upload is complete (`del bucket.multiparts[...]`); each goes as soon
            # as it is read here, so the next part's bytes are written to the memory this part held.
            part.dispose()
            if composite:
                part_checksums.extend(checksum.digest())
    except BaseException:
        buffer.close()
        raise

    if composite:
        checksum_value = compute_checksum(bytes(part_checksums), kind.checksum_algorithm).decode()
        checksum_details = (kind.checksum_type, checksum_value, len(parts))
    else:
        checksum_details = (kind.checksum_type, base64.b64encode(whole.digest()).decode(), 1)
    full_etag = md5_hash()
    full_etag.update(md5s)
    return _Assembled(buffer, size), f"{full_etag.hexdigest()}-{len(parts)}", checksum_details


def complete_uploads_in_one_pass() -> None:
    """Process-wide and idempotent: moto's CompleteMultipartUpload reads each part once, in pieces, and the new key
    keeps the file it was written to."""
    FakeMultipart.complete = _complete_in_one_pass  # type: ignore[assignment,method-assign]
    FakeKey.value = _VALUE.setter(_set_value)  # type: ignore[method-assign,assignment]
