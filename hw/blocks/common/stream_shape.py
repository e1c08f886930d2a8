"""The FINN-order stream shape a block spec shares with the others: ``C`` channels folded onto ``PE`` lanes, ``C/PE``
beats a pixel, lane ``pe`` of beat ``pixel*CF + f`` carrying channel ``f*PE + pe``.

A spec (a frozen dataclass with the fields ``channels`` and ``pe``, and ``pixels`` as a field or a property) derives
from :class:`ChannelFolding` for ``cf`` and ``frame_beats`` and the size check, and names its stream widths with
:class:`LaneWidth`::

    @dataclass(frozen=True)
    class TailSpec(ChannelFolding):
        channels: int
        pe: int
        pixels: int
        acc_bits: int

        acc_width = LaneWidth("acc_bits")      # PE * acc_bits

        def __post_init__(self):
            self.check_folding("pixels")
"""

from __future__ import annotations

__all__ = ["ChannelFolding", "LaneWidth"]


class ChannelFolding:
    """``cf``, ``frame_beats`` and the folding check of a spec with ``channels``, ``pe`` and ``pixels``."""

    def check_folding(self, *sizes: str) -> None:
        """``channels``, ``pe`` and the named ``sizes`` at least 1, and PE dividing the channels; else
        ``ValueError`` naming the parameter."""
        for name in ("channels", "pe", *sizes):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % self.pe:
            raise ValueError(f"PE ({self.pe}) must divide the channels ({self.channels})")

    @property
    def cf(self) -> int:
        """Channel folds: beats per pixel, ``C / PE``."""
        return self.channels // self.pe

    @property
    def frame_beats(self) -> int:
        """Beats per frame: ``pixels * C / PE``."""
        return self.pixels * self.cf


class LaneWidth:
    """The width of a stream word: ``PE`` lanes of the spec's field ``bits_field`` (a read-only attribute)."""

    def __init__(self, bits_field: str):
        self.bits_field = bits_field

    def __set_name__(self, owner, name: str):
        self.__doc__ = f"``PE * {self.bits_field}``: the width of a {name.removesuffix('_width')} stream word."

    def __get__(self, spec, owner=None):
        if spec is None:
            return self
        return spec.pe * getattr(spec, self.bits_field)
