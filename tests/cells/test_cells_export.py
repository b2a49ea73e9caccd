"""The new cells trace with ``torch.export``: one step and a chunk from a given state, as
an exported program that equals the eager cell (the groundwork of an exported engine)."""

from __future__ import annotations

import pytest
import torch

import streamrnn


class Step(torch.nn.Module):
    def __init__(self, cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, h):
        y, state = self.cell.step(x, streamrnn.State(h=h))
        return y, state.h


class Chunk(Step):
    def forward(self, x, h):
        y, state = self.cell(x, streamrnn.State(h=h))
        return y, state.h


@pytest.mark.parametrize("cls,extra", [(streamrnn.MinGRU, 0), (streamrnn.MinLSTM, 0),
                                       (streamrnn.DecayGRU, 1)])
def test_step_and_chunk_export_and_equal_the_eager_cell(cls, extra):
    cell = cls(3 + extra, 8, num_layers=2, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(2, 2, 8, generator=gen)
    for wrapper, x in [(Step, torch.rand(2, 3 + extra, generator=gen)),
                       (Chunk, torch.rand(2, 6, 3 + extra, generator=gen))]:
        with torch.no_grad():
            program = torch.export.export(wrapper(cell), (x, h))
            got, want = program.module()(x, h), wrapper(cell)(x, h)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
