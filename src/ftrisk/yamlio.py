"""Strict YAML loading: duplicate keys are errors, and every value remembers its line.

Validation errors then name the file, the line and the field, and suggest the close spelling of
a misspelt key. A boolean where a number is expected (``epochs: true``) is an error, though
pydantic would read it as 1.
"""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from ftrisk.errors import InputError, decode_utf8

Loc = tuple[str | int, ...]
_SCALARS = yaml.SafeLoader("")
M = TypeVar("M", bound=BaseModel)


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        explicit: dict[str, int] = {}  # key -> the line it was first written on
        for key_node, value_node in node.value:
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`; own keys override
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [
                    value_node]
                for source in sources:
                    merged = _construct(source, loc, {}, path)
                    if not isinstance(merged, dict):
                        raise InputError("'<<' expects a mapping", path=path,
                                         line=key_node.start_mark.line + 1)
                    for merged_key, merged_value in merged.items():
                        out.setdefault(merged_key, merged_value)
                continue
            line = key_node.start_mark.line + 1
            if key in out and key in explicit:
                raise InputError(f"duplicate key '{key}' (first on line {explicit[key]}, again "
                                 f"on line {line})", path=path, line=line)
            explicit[key] = line
            out[key] = _construct(value_node, (*loc, key), lines, path)
            lines[(*loc, key)] = key_node.start_mark.line + 1  # errors point at the key
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines, path) for i, item in enumerate(node.value)]
    # Scalars: PyYAML's safe constructor decides the type (int, float, bool, null, str).
    try:
        return _SCALARS.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as err:
        raise InputError(f"cannot read value: {getattr(err, 'problem', err)}", path=path,
                         line=node.start_mark.line + 1) from None


def load_yaml(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file into plain data plus a map from field location to line number."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file does not exist", path=path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the config file: {err.strerror}", path=path) from None
    try:
        node = yaml.compose(decode_utf8(data, path), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"invalid YAML: {getattr(err, 'problem', err)}", path=path,
                         line=mark.line + 1 if mark else None) from err
    if node is None:
        raise InputError("config file is empty", path=path)
    lines: dict[Loc, int] = {}
    return _construct(node, (), lines, path), lines


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (for spelling suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()))
        current = next((c for c in candidates
                        if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current


#: What a boolean in a numeric field is told; pydantic alone would read ``true`` as 1.
BOOLEAN_FOR_NUMBER = ("expected a number, got a boolean (YAML reads true/false, yes/no and "
                      "on/off as booleans)")


def _arms(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (``int | None``), else the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _takes_number_not_boolean(annotation: Any) -> bool:
    arms = _arms(annotation)
    return (any(arm in (int, float) for arm in arms)
            and not any(arm in (bool, Any, object) for arm in arms))


def boolean_for_number(annotation: Any, value: Any, loc: Loc = (), *,
                       into_models: bool = True) -> Loc | None:
    """Where ``value`` holds a boolean that ``annotation`` expects to be a number: inside
    lists, tuples and mappings, and with ``into_models`` inside nested pydantic models too.
    None when there is no such boolean."""
    if isinstance(value, bool):
        return loc if _takes_number_not_boolean(annotation) else None
    for arm in _arms(annotation):
        origin, args = get_origin(arm), get_args(arm)
        found: Loc | None = None
        if origin is None and isinstance(arm, type) and issubclass(arm, BaseModel):
            if into_models and isinstance(value, dict):
                for key, item in value.items():
                    field = arm.model_fields.get(key)
                    if field is not None and found is None:
                        found = boolean_for_number(field.annotation, item, (*loc, key))
        elif origin in (tuple, list, set, frozenset) and isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                    item_type = args[index] if index < len(args) else Any  # fixed-size tuple
                else:
                    item_type = args[0] if args else Any
                if found is None:
                    found = boolean_for_number(item_type, item, (*loc, index),
                                               into_models=into_models)
        elif origin is dict and isinstance(value, dict) and len(args) == 2:
            for key, item in value.items():
                if found is None:
                    found = boolean_for_number(args[1], item, (*loc, key),
                                               into_models=into_models)
        if found is not None:
            return found
    return None


def validate(model: type[M], data: Any, *, path: str | Path,
             lines: dict[Loc, int] | None = None) -> M:
    """Validate ``data`` as ``model``; the first error names file, line and field.

    A boolean where the model expects a number is an error too (pydantic would take it as 1).
    """
    lines = lines or {}
    boolean = boolean_for_number(model, data)
    if boolean is not None:
        raise InputError(BOOLEAN_FOR_NUMBER, path=path, line=_nearest_line(boolean, lines),
                         field=".".join(str(part) for part in boolean))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        field = ".".join(str(p) for p in loc)
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            owner = _model_at(model, loc)
            known = list(owner.model_fields) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            message = "unknown key" + (f"; did you mean '{close[0]}'?" if close else
                                       f"; expected one of: {', '.join(known)}")
        elif first["type"] == "missing":
            message = "required field is missing"
        raise InputError(message, path=path, line=_nearest_line(loc, lines),
                         field=field) from None


def load_model_file(model: type[M], path: str | Path) -> M:
    """Load and validate a YAML file as ``model``."""
    data, lines = load_yaml(path)
    return validate(model, data, path=path, lines=lines)
