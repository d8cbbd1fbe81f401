"""A Griffe extension for the API reference: an optimizer's docstring as Python has it.

An optimizer's docstring holds the placeholders `{{base_optimizer_keyword_args}}` and
`{{base_optimizer_kwargs}}`, which its class statement replaces with the base class's argument
entries (`ferroptim.optimizers._arguments.expand_base_arguments_doc`, Keras's way of
documenting those arguments once). Griffe reads the source, which holds the placeholders: for a
class whose docstring holds one, this takes the docstring of the imported class instead.
Everything else is still read from the source; inspecting the whole package
(`force_inspection`) would also change the rest of the reference (members out of source order,
descriptors shown by their repr, defaults as computed values).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import griffe

_PLACEHOLDER = re.compile(r"^\s*\{\{\w+\}\}\s*$", re.MULTILINE)


class RuntimeDocstrings(griffe.Extension):
    """Replace the docstring of a class that holds a placeholder with its runtime `__doc__`."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Run when Griffe has read a class and its members (Griffe's hook).

        Args:
            cls: the class as Griffe read it from the source.
            **kwargs: the hook's other arguments, unused.
        """
        if cls.docstring is None or not _PLACEHOLDER.search(cls.docstring.value):
            return
        # The directory the top-level package sits in, so that the import needs no install.
        filepath = Path(str(cls.filepath))
        depth = cls.module.path.count(".") + (filepath.name == "__init__.py")
        runtime = griffe.dynamic_import(cls.path, import_paths=[filepath.parents[depth]])
        cls.docstring.value = inspect.cleandoc(runtime.__doc__)
