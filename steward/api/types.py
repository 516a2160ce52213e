"""Field types of the spec, as strict as the CRD that the Kubernetes API server enforces.

pydantic's lax mode turns `"20"`, `true` and `2.0` into integers and `"1"` into a float; the API server
refuses all of them (`type: integer` / `type: number` in the CRD), so a manifest the CLI and the local loop
accepted would fail `kubectl apply`. Spec fields use these types instead. A model-wide `strict=True` is not
an option: on dicts (python mode, which is what YAML and the Kubernetes client give us) it would also refuse
plain strings for enum fields. Status stays lax: it must still read whatever an older or newer operator wrote.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, model_validator
from pydantic.alias_generators import to_camel

# `type: integer`: no bool, no string, no float even when it is whole (JSON 2.0 is a number, not an integer).
SpecInt = Annotated[int, Strict()]
# `type: number`: JSON integers count (strict float takes int), bool and strings do not; JSON has no inf/NaN.
SpecFloat = Annotated[float, Strict(), AllowInfNan(False)]
# `type: boolean`: true or false, not "true", "yes" or 1.
SpecBool = Annotated[bool, Strict()]
# `type: string`: durations ("30s"), quantities ("2Gi") and versions ("3") are strings, never numbers.
SpecStr = Annotated[str, Strict()]


class SpecModel(BaseModel):
    """A part of the spec, read as the API server reads it: camelCase on the wire, unknown fields an error
    (as kubectl's strict field validation makes them), an explicit null the same as an absent field, and
    an integer beyond 64 bits a float.

    The API server prunes a null given for a field that is not `nullable` before defaulting and
    validation, so `memory: null` or `cpu: ~` is accepted there and means "the default": treat it alike.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # Only known fields: an unknown one is an error even when null, as it is for kubectl.
        known = {*cls.model_fields, *(f.alias for f in cls.model_fields.values() if f.alias)}
        return {k: _as_decoded(v) for k, v in data.items() if v is not None or k not in known}


_INT64 = 2**63


def _as_decoded(value: Any) -> Any:
    """What the API server's JSON decoding makes of a value: an integer that int64 cannot hold is a float,
    which `type: integer` refuses and `type: number` takes (one beyond float64 does not decode at all)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, list):
        return [_as_decoded(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_decoded(v) for k, v in value.items()}
    return value
