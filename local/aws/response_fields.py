"""Make moto's response serializer find a field of a plain dict without re-deriving the field's aliases each time.

moto serialises every DynamoDB answer by walking the operation's output shape: for each member of each structure
it asks an attribute picker for the keys the member may be stored under (the member's name, its shape's name, a
prefix-less name, their snake_case forms...) and takes the first one the result holds. DynamoDB results are plain
dicts of attribute values, and an attribute value is a structure of ten members of which one is present, so the
picker derives and tries every alias of nine missing members for every attribute of every item. Measured on this
machine, in process: a GetItem of a COPYING job (about 30 attributes) took 2.6 ms of CPU, a small item's 1.1 ms;
in the burst benchmark the serializer was 18% of the emulator process's time.

For a plain dict the aliases depend only on the member (its name, its shape, the structure holding it) and on the
picker's alias providers: a dict has no `Meta` of its own and its class name is always "dict". Here they are
derived once per member and remembered; the picker still tries them in moto's order on every object. Any other
kind of object goes through moto's own derivation. The same GetItem: 1.9 ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from moto.core.serialize import AttributePickerContext, XFormedAttributePicker

_ORIGINAL_GET_POSSIBLE_KEYS = XFormedAttributePicker.get_possible_keys
_KEYS: dict[tuple[Any, ...], tuple[str, ...]] = {}
"""(member name, its shape, the structure holding it, alias providers) → the keys to try, in moto's order. The
shapes are botocore's, cached with their service model for the life of the process: a bounded set."""


def _possible_keys(self: XFormedAttributePicker, context: AttributePickerContext) -> Iterable[str]:
    if type(context.obj) is not dict:
        return _ORIGINAL_GET_POSSIBLE_KEYS(self, context)
    shape = context.shape
    member = (context.key, shape, getattr(shape, "parent", None), tuple(self.alias_providers))
    keys = _KEYS.get(member)
    if keys is None:
        keys = _KEYS[member] = tuple(_ORIGINAL_GET_POSSIBLE_KEYS(self, context))
    return keys


def derive_response_field_aliases_once() -> None:
    """Process-wide and idempotent: moto's serializer derives a dict field's aliases once per member."""
    XFormedAttributePicker.get_possible_keys = _possible_keys  # type: ignore[method-assign,assignment]
