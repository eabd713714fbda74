"""Dotted keys (``"MODEL.RESNETS.DEPTH"``) into nested configs and checkpoint dicts."""

_RAISE = object()


def get_key(node, key, default=_RAISE):
    """
    The value at a dotted key of nested mappings (a detectron2 ``CfgNode``, a loaded checkpoint).

    Args:
        node: the root mapping.
        key (str or tuple[str]): ``"MODEL.WEIGHTS"``, or the parts ``("MODEL", "WEIGHTS")`` when a
            part may itself contain dots (checkpoint keys); ``()`` or ``""`` is ``node`` itself.
        default: returned when a part is missing or its parent is not a mapping; when omitted,
            a missing part raises.

    Returns:
        the value found, or ``default``.

    Raises:
        KeyError: naming the full key and the missing part, when ``default`` is not given.
    """
    parts = tuple(key.split(".")) if isinstance(key, str) and key else tuple(key or ())
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            if default is _RAISE:
                raise KeyError(f"{'.'.join(parts)}: no {part!r}")
            return default
        node = node[part]
    return node


def nest_keys(flat):
    """``{"SOLVER.BASE_LR": 0.1, "SOLVER.STEPS": [...]}`` -> ``{"SOLVER": {"BASE_LR": 0.1, "STEPS":
    [...]}}`` (plain dicts, in the order given)."""
    root = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return root


def set_key(node, key, value):
    """Set the value at a dotted key of nested mappings; every parent must exist (a missing one
    raises KeyError)."""
    *parents, leaf = key.split(".")
    parent = get_key(node, ".".join(parents)) if parents else node
    if not isinstance(parent, dict):
        raise KeyError(f"{key}: {'.'.join(parents)} is not a mapping")
    parent[leaf] = value


def cli_value(value):
    """
    ``value`` as the VALUE of a ``KEY VALUE`` command-line override that yacs decodes back to it:
    lists and tuples as tuple literals (``(1, 2, )``; their strings quoted), booleans ``True`` /
    ``False``, ``None``, numbers by ``str`` (floats round-trip), strings as they are (yacs keeps a
    string that is no Python literal). The one writer of override values: study commands, the keys
    a run adopts from its weights and the converter's printed overrides use it.
    """
    if isinstance(value, (list, tuple)):
        return (
            "("
            + "".join(f"{repr(v) if isinstance(v, str) else cli_value(v)}, " for v in value)
            + ")"
        )
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    return str(value)
