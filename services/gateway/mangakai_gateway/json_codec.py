"""The Connect JSON codec of the public API: unknown enum names are refused, naming the field.

protobuf's JSON parser either refuses every unknown field (which breaks a
browser app one release ahead of the gateway) or, with
`ignore_unknown_fields`, also drops enum values it does not know, so that
`"artStyle": "STYLE_TYPO"` silently became the default style. This codec
checks every enum given by name against its descriptor first (INVALID_ARGUMENT
with a BadRequest violation per field, as the gateway's own validation
answers), then parses ignoring unknown fields. Enums given by number are
checked by validation.py like the ones that come over gRPC.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from mangakai_gateway.connect_errors import connect_error
from mangakai_runtime.errors import FieldViolation, InvalidArgument

M = TypeVar("M", bound=Message)


def _unknown_enum_names(value: Any, descriptor: Descriptor, prefix: str) -> list[FieldViolation]:
    if not isinstance(value, dict):
        return []
    violations: list[FieldViolation] = []
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            continue
        path = f"{prefix}{field.name}"
        # A list for a field that is not repeated is refused by the parser afterwards.
        items = item if isinstance(item, list) else [item]
        if field.enum_type is not None:
            for name in items:
                if isinstance(name, str) and name not in field.enum_type.values_by_name:
                    violations.append(
                        FieldViolation(path, f'unknown value "{name}" for {field.enum_type.full_name}')
                    )
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for nested in items:
                violations.extend(_unknown_enum_names(nested, field.message_type, f"{path}."))
    return violations


class ProtoJsonCodec:
    """A connectrpc codec (`connectrpc.codec.Codec`) for protobuf JSON."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message).encode()

    def decode(self, data: bytes | bytearray, message_class: type[M]) -> M:
        # Malformed JSON raises here and connectrpc answers INVALID_ARGUMENT with the parser's message.
        value = json.loads(data)
        violations = _unknown_enum_names(value, cast(Descriptor, message_class.DESCRIPTOR), "")
        if violations:
            # A ConnectError passes through connectrpc's decoding unchanged, details included.
            raise connect_error(InvalidArgument(violations), "decode")
        message = message_class()
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
        return message
