"""The FINN MVAU folding shared by the binary and the integer matrix-vector units (``binary_mvu``, ``int_mvu``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MvuFolding:
    """The FINN MVAU folding both matrix-vector units share: ``MH x MW``, ``SIMD`` inputs x ``PE`` outputs per clock,
    ``SF = MW / SIMD`` input beats and ``NF = MH / PE`` output beats per vector, one step per clock."""

    mw: int  # input vector length (K*K*Cin)
    mh: int  # output channels
    simd: int  # input elements per beat, divides mw
    pe: int  # output channels per beat, divides mh

    def check_folding(self):
        for name in ("mw", "mh", "simd", "pe"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.mw % self.simd:
            raise ValueError(f"SIMD ({self.simd}) must divide MW ({self.mw})")
        if self.mh % self.pe:
            raise ValueError(f"PE ({self.pe}) must divide MH ({self.mh})")

    @property
    def sf(self) -> int:
        """Synapse folds: input beats per vector, ``MW / SIMD``."""
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        """Neuron folds: output beats per vector, ``MH / PE``."""
        return self.mh // self.pe

    @property
    def cycles_per_vector(self) -> int:
        """Clock cycles per input vector in steady state without stalls: ``SF * NF``."""
        return self.sf * self.nf
