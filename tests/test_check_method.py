"""noisyfit.testing.check_method: passes a built-in method, and names the state an outside method forgot."""

import textwrap

import pytest

from noisyfit.testing import check_method


def test_a_built_in_method_passes_and_the_report_counts_what_was_compared():
    report = check_method("gce")
    assert report["compared"]["epoch_figures"] >= 4 * 3 and report["compared"]["per_sample_arrays"] >= 5
    assert report["final_test_acc"] > 0.8 and 0 <= report["estimated_noise_rate"] <= 1


def test_state_kept_outside_the_buffers_is_named(tmp_path):
    # a step counter in a plain attribute: lost at a cut, so the resumed run weights its loss differently
    path = tmp_path / "leaky.py"
    path.write_text(textwrap.dedent('''
        import torch.nn.functional as F

        from noisyfit.methods.single_network import SingleNetworkLossMethod


        class Leaky(SingleNetworkLossMethod):
            def __init__(self, *args):
                super().__init__(*args)
                self.steps = 0

            def loss(self, logits, labels):
                self.steps += 1
                return F.cross_entropy(logits, labels, reduction="none") * (1 + 0.01 * self.steps)
    '''))
    with pytest.raises(AssertionError, match=r"epoch \d+: train_loss is .* in the second run|differs: the method keeps state"):
        check_method(f"{path}:Leaky")
    with pytest.raises(ValueError, match="must be one of the run's 4 epochs"):
        check_method("ce", cut=(4, 1))
