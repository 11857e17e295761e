"""Form-encoded and multipart callback bodies (seen from real integrations) read into fields, values as text."""

from __future__ import annotations

from urllib.parse import parse_qsl

MAX_FIELDS = 200


def read_form(raw: bytes) -> dict[str, str]:
    """`application/x-www-form-urlencoded`; raises ValueError (or UnicodeError) when it is not one."""
    return _fields(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))


def read_multipart(content_type: str, raw: bytes) -> dict[str, str]:
    # Imported here: email's parser and policies cost 0.02x of `import boto3` on every callback's cold start, for
    # a form of body hardly any sender uses.
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + raw)
    if not message.is_multipart():
        raise ValueError("multipart body without parts")
    named = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and not part.get_filename():  # a file part is never a callback field
            value = part.get_payload(decode=True)
            text = value.decode(part.get_content_charset() or "utf-8") if isinstance(value, bytes) else ""
            named.append((name, text))
    return _fields(named)


def _fields(pairs: list[tuple[str, str]]) -> dict[str, str]:
    if len(pairs) > MAX_FIELDS:
        raise ValueError(f"more than {MAX_FIELDS} fields")
    return dict(pairs)
