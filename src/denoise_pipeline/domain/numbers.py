"""Numbers from the provider as DynamoDB can store them: read from any JSON or text form, finite, in range."""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation
from typing import Any

# DynamoDB numbers: 38 significant digits, magnitudes up to 9.99…E+125; boto3 refuses below 1E-128.
_DYNAMODB = Context(prec=38, Emax=125, Emin=-128, traps=[])
_DYNAMODB_MAX = Decimal("9." + "9" * 37 + "E+125")


def read_number(value: Any) -> Decimal | None:
    """A JSON number, a Decimal or numeric text as a storable Decimal; None when absent or not a finite number."""
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        return None
    return dynamodb_number(number) if number.is_finite() else None


def dynamodb_number(value: Decimal) -> Decimal:
    """`value` rounded to 38 significant digits and clamped into DynamoDB's range (tiny magnitudes become 0)."""
    if value.is_zero() or value.adjusted() < _DYNAMODB.Emin:
        return Decimal(0)
    rounded = _DYNAMODB.plus(value)
    if not rounded.is_finite() or rounded.adjusted() > _DYNAMODB.Emax:
        return _DYNAMODB_MAX.copy_sign(value)
    return rounded
