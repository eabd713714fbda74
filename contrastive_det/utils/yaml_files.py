"""YAML files read strictly: a key written twice in one mapping is an error, not a silent
override."""

import yaml

__all__ = ["DuplicateKeyError", "load_yaml_file"]


class DuplicateKeyError(ValueError):
    """A mapping of a YAML file has the same key twice; the message names the file, key and
    lines."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that appears twice in one mapping (PyYAML keeps the
    last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself below
                continue
            if first is not None:
                raise DuplicateKeyError(
                    f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} is given twice in "
                    f"the same mapping (first on line {first}); YAML would keep only the last one: "
                    f"remove one of them"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml_file(path):
    """
    The content of the YAML file ``path`` (``yaml.safe_load`` semantics; None for an empty file).

    Raises:
        DuplicateKeyError: a key given twice in one mapping, naming ``path:line`` and the key.
        yaml.YAMLError: the file is not valid YAML.
    """
    with open(path) as f:
        loader = _UniqueKeyLoader(f)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
