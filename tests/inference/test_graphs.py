"""Graphs of Pyro programs: what a capture takes as inputs, that the recorded graph computes the
program, why a capture fails (in a few words, with the program's line), and the check that a
graph agrees with eager."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vae.inference.graphs import Uncompilable, agree, buffers_of, capture, first_line, inputs_of, owners


class Part(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("order", torch.arange(3))  # structure: stays a constant
        self.register_buffer("shift", torch.ones(2))  # a value: an input

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(self.linear(x) + self.shift, 1.0).to_event(1), obs=x[:, :2])

    def guide(self, x):
        pass


def test_owners_are_the_modules_whose_methods_the_programs_are():
    part, other = Part(), Part()
    assert owners(part.model, part.guide) == [part]
    assert owners(part.model, other.guide) == [part, other]
    assert owners(lambda x: None, part.guide) == [part]


def test_a_graph_takes_parameters_and_floating_point_buffers_only():
    part = Part()
    assert list(inputs_of(part)) == ["linear.weight", "linear.bias", "shift"]
    assert list(buffers_of(part)) == ["shift"]
    assert inputs_of(part)["shift"] is part.shift


def test_the_captured_graph_computes_the_program(f64):
    part = Part()

    def log_density(weight, bias, x):
        # validating the arguments would branch on their values, which no capture allows
        return dist.Normal(x @ weight.T + bias, 1.0, validate_args=False).log_prob(x[:, :2]).sum()

    example = [part.linear.weight.detach(), part.linear.bias.detach(), torch.randn(4, 3)]
    graph = capture(log_density, example)
    x = torch.randn(4, 3)  # other data: the graph is not a constant of its example
    expected = dist.Normal(x @ example[0].T + example[1], 1.0).log_prob(x[:, :2]).sum()
    torch.testing.assert_close(graph(example[0], example[1], x), expected, rtol=1e-12, atol=1e-12)


def test_a_branch_on_a_value_fails_the_capture_naming_the_line():
    def branchy(x):
        if x.sum() > 0:  # the line the message names
            return x + 1
        return x - 1

    with pytest.raises(Uncompilable) as info:
        capture(branchy, [torch.randn(3)])
    message = str(info.value)
    line = branchy.__code__.co_firstlineno + 1
    assert message.startswith("cannot be captured (a branch, index or size depends on a tensor's value")
    assert message.endswith(f", at test_graphs.py:{line} in branchy)")
    assert info.value.stage == "capture" and info.value.done is None


def test_first_line_keeps_the_first_line_of_other_errors():
    try:
        raise ValueError("bad shape\nmore detail")
    except ValueError as e:
        assert first_line(e).startswith("ValueError: bad shape, at test_graphs.py:")


def test_agree_accepts_a_relative_1e_3_and_refuses_more():
    eager = [torch.tensor([100.0, -3.0]), torch.tensor([1e-6])]
    agree([eager[0] + 0.09, eager[1] * (1 + 9e-4)], eager)  # 9e-4 of each tensor's scale
    with pytest.raises(
        Uncompilable, match=r"gives another value 1 compiled than eager \(relative difference 2\.0e-03\)"
    ) as info:
        agree([eager[0], eager[1] * 1.002], eager, how="compiled")
    assert info.value.stage == "compile"
    with pytest.raises(
        Uncompilable, match="the program depends on something the capture does not see"
    ) as info:
        agree([eager[0] + 1.0, eager[1]], eager)
    assert info.value.stage == "capture"
    with pytest.raises(Uncompilable):
        agree([torch.tensor([float("nan"), 0.0]), eager[1]], eager)  # NaN is never agreement
