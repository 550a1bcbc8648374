"""Entropy coding of the latent ``y``: rANS with the Gaussian conditional's CDF tables, with or
without the staged context (:mod:`dmenet_geo.model.context`).

The entropy parameters arrive as float64 raw ``(scales, means)`` computed on the CPU; ``quantise``
turns them into scale indexes and means on a 1/64 grid, so encoder and decoder derive the same
integers. With a context, each item is still one rANS string: the symbols of each stage in turn
(inside a stage in channel, row, column order); the decoder reads a stage, computes the next
stage's parameters from everything read so far, and reads on in the same stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from compressai.ans import RansDecoder
from compressai.entropy_models import GaussianConditional
from torch import Tensor

from dmenet_geo.model.context import CheckerboardContext, CodingStages

__all__ = ["SymbolCoder", "Quantise", "encode_staged", "decode_staged"]

# (raw float64 parameters) -> (int32 scale indexes, float32 grid-rounded means), both on the CPU
Quantise = Callable[[Tensor], tuple[Tensor, Tensor]]


class SymbolCoder:
    """rANS coding of integer symbols with per-symbol scale indexes.

    CompressAI's coder takes the CDF tables as Python lists and converts all of them (about 200,000
    integers, ~2.3 ms) on every call; a staged decoder calls it once per stage. Each call here passes
    only the rows its indexes use, renumbered in order: the coder reads a row only through a
    symbol's index, so the integers, and the bitstreams, are the same."""

    def __init__(self, gc: GaussianConditional) -> None:
        self._encoder = gc.entropy_coder
        self.tables = (
            gc._quantized_cdf.tolist(),
            gc._cdf_length.reshape(-1).int().tolist(),
            gc._offset.reshape(-1).int().tolist(),
        )

    def _rows(self, indexes: Tensor) -> tuple[list[int], list[list[int]], list[int], list[int]]:
        """``indexes`` renumbered to the rows they use, and those rows of the three tables."""
        used, local = torch.unique(indexes.reshape(-1), return_inverse=True)
        rows = used.tolist()
        cdfs, sizes, offsets = self.tables
        return (
            local.int().tolist(),
            [cdfs[r] for r in rows],
            [sizes[r] for r in rows],
            [offsets[r] for r in rows],
        )

    def encode(self, symbols: Tensor, indexes: Tensor) -> bytes:
        """One string for the flattened integer-valued ``symbols`` of one item."""
        if symbols.shape != indexes.shape:
            raise ValueError("symbols and indexes should have the same size")
        return self._encoder.encode_with_indexes(symbols.reshape(-1).int().tolist(), *self._rows(indexes))

    def decoder(self, string: bytes) -> Callable[[Tensor], Tensor]:
        """A reader of ``string``: each call decodes as many symbols as the indexes it is given
        (continuing where the previous call stopped) and returns them as int32 of that shape."""
        dec = RansDecoder()
        dec.set_stream(string)

        def read(indexes: Tensor) -> Tensor:
            values = dec.decode_stream(*self._rows(indexes))
            return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)

        return read

    def decode(self, strings: Sequence[bytes], indexes: Tensor) -> Tensor:
        """Symbols (float32, shaped like ``indexes``) of a batch coded without context."""
        if len(strings) != indexes.shape[0]:
            raise ValueError("Invalid strings or indexes parameters")
        return torch.stack([self.decoder(s)(indexes[i]) for i, s in enumerate(strings)]).float()


def encode_staged(
    context: CheckerboardContext, quantise: Quantise, coder: SymbolCoder, y: Tensor, params: Tensor
) -> tuple[Tensor, list[bytes]]:
    """Code ``y`` (float32, CPU) given the hyperprior's float64 ``params``, stage by stage; returns
    the symbols and one string per item."""
    stages = CodingStages(context, params)
    symbols = torch.zeros(y.shape, dtype=torch.float32)
    parts: list[tuple[Tensor, Tensor]] = []
    for _ in stages.masks:
        idx, mu = quantise(stages.stage_parameters())
        stage_symbols = torch.round(stages.gather(y) - mu)
        stages.place(symbols, stage_symbols)
        parts.append((stage_symbols, idx))
        stages.record_stage(stage_symbols.double() + mu.double())
    strings = []
    for i in range(y.shape[0]):
        item_symbols = torch.cat([s[i].reshape(-1) for s, _ in parts])
        strings.append(coder.encode(item_symbols, torch.cat([k[i].reshape(-1) for _, k in parts])))
    return symbols, strings


def decode_staged(
    context: CheckerboardContext,
    quantise: Quantise,
    coder: SymbolCoder,
    strings: Sequence[bytes],
    params: Tensor,
) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`encode_staged`: the symbols (float32) and their means."""
    b, c2, h, w = params.shape
    if len(strings) != b:
        raise ValueError("Invalid strings or parameters")
    readers = [coder.decoder(s) for s in strings]
    shape = (b, c2 // 2, h, w)
    symbols = torch.zeros(shape, dtype=torch.float32)
    means = torch.zeros(shape, dtype=torch.float32)
    stages = CodingStages(context, params)
    for _ in stages.masks:
        idx, mu = quantise(stages.stage_parameters())
        stage_symbols = torch.stack([read(idx[i]) for i, read in enumerate(readers)]).float()
        stages.place(symbols, stage_symbols)
        stages.place(means, mu)
        stages.record_stage(stage_symbols.double() + mu.double())
    return symbols, means
