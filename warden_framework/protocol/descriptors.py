"""Questions about protobuf field descriptors that the supported runtimes (protobuf 5.29 to
7.x, pyproject.toml) answer differently, answered in one place. later protobuf 6 releases added
`FieldDescriptor.is_repeated` and deprecated `label`; protobuf 7 removed `label`."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

__all__ = ["is_repeated"]


def is_repeated(field: FieldDescriptor) -> bool:
    """True for a `repeated` field, on every supported protobuf runtime."""
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED
