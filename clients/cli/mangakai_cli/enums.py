"""How proto enum values are spelled on the command line and in output.

`ART_STYLE_SHONEN` is `shonen`, `COLOR_PALETTE_BLACK_AND_WHITE` is
`black-and-white`: the value name without the enum's prefix, lower case, with
dashes. The spellings come from the generated descriptors, so a value added
to the proto becomes a valid option without touching the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.descriptor import EnumDescriptor


def _prefix(descriptor: EnumDescriptor) -> str:
    # Every enum of the API starts with X_UNSPECIFIED = 0, which gives its prefix "X_".
    return descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")


def spelling(descriptor: EnumDescriptor, number: int) -> str:
    """The CLI spelling of a value; "unspecified" for 0 and the number itself when unknown."""
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(_prefix(descriptor)).lower().replace("_", "-")


class EnumOption:
    """The values of one proto enum as command-line choices, with optional short aliases."""

    def __init__(self, descriptor: EnumDescriptor, aliases: Mapping[str, str] | None = None) -> None:
        self.descriptor = descriptor
        self._numbers = {spelling(descriptor, v.number): v.number for v in descriptor.values if v.number != 0}
        self._aliases = dict(aliases or {})
        unknown = set(self._aliases.values()) - set(self._numbers)
        if unknown:
            raise ValueError(f"aliases for {descriptor.name} name unknown values: {sorted(unknown)}")

    @property
    def choices(self) -> list[str]:
        return [*self._numbers, *self._aliases]

    def number(self, choice: str) -> int:
        """The enum number for a spelling or an alias; KeyError when it is neither."""
        return self._numbers[self._aliases.get(choice, choice)]
