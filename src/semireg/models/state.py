"""The buffers that are a module's changing state."""

from __future__ import annotations

import torch
from torch import nn


def state_buffers(module: nn.Module) -> list[torch.Tensor]:
    """The buffers the module's state_dict holds (running statistics, counters), in named_buffers order;
    non-persistent buffers are constants a module fills once (the MLP's noise bank), so a copy of the
    module or a collective that keeps buffers in step need not touch them."""
    saved = module.state_dict(keep_vars=True).keys()
    return [b for name, b in module.named_buffers() if name in saved]
