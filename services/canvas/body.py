"""Request bodies decoded strictly: JSON types as sent (`"true"` is not a boolean), errors naming the field.

Litestar converts bodies leniently (msgspec `strict=False`); this DTO decodes straight into the
msgspec Struct with `strict=True` and keeps the Struct's own OpenAPI schema.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from litestar.dto import DTOConfig, MsgspecDTO
from litestar.exceptions import ClientException, ValidationException
from litestar.typing import FieldDefinition

T = TypeVar("T", bound=msgspec.Struct)


class StrictBody(MsgspecDTO[T], Generic[T]):
    config = DTOConfig(rename_strategy="camel", forbid_unknown_fields=True)

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.ValidationError as exc:
            message, _, path = str(exc).partition(" - at `")
            # `$.title` names the field; at the root (`$`) the message names it ("unknown field `id`").
            field = path.rstrip("`").removeprefix("$").removeprefix(".")
            raise ValidationException(str(exc), extra=[{"message": message, "key": field}]) from exc
        except msgspec.DecodeError as exc:
            raise ClientException(f"invalid JSON body: {exc}") from exc

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))
