"""Test-session settings shared by the tests and the doctests.

Tiny tensors dominate the suite; with two threads on a busy 2-core machine their ops
stall, so every test runs torch on one thread (results do not depend on it).
"""

import torch

torch.set_num_threads(1)
