"""The public TrainingSet: labels, batches by index and in-order prediction, from tensors or any (x, y) dataset."""

import re

import numpy as np
import pytest
import torch

from noisyfit.data.labeled import DataError
from noisyfit.data.training_set import TrainingSet


class PairDataset(torch.utils.data.Dataset):
    """A map-style dataset as users write them: HWC uint8 images and int labels, no indices."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), rng.integers(0, 3, n)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_of_pairs_gives_the_same_batches_and_predictions_as_tensors(workers):
    x, y = _images()
    a = TrainingSet.from_tensors(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y))
    b = TrainingSet.from_dataset(PairDataset(x, y), workers=workers, eval_batch_size=7)
    assert torch.equal(a.labels, b.labels) and a.is_image and b.is_image
    assert torch.equal(a.augmenter.mean, b.augmenter.mean) and torch.equal(a.augmenter.std, b.augmenter.std)
    index = torch.tensor([5, 0, 39, 5])
    pa, pb = a.batch(index), b.batch(index)
    assert torch.equal(pa.raw, pb.raw) and pa.raw.shape == (4, 3, 6, 5) and pb.y.tolist() == y[[5, 0, 39, 5]].tolist()
    # the sample index is the dataset index: row k of the stored images is x[k] as CHW
    assert torch.equal(pb.raw[2], torch.from_numpy(x[39]).permute(2, 0, 1))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(90, 3))
    out_a, out_b = a.predict(net), b.predict(net)  # in sample order, whatever the pass's batch size
    assert out_a.shape == (40, 3) and torch.allclose(out_a, out_b)
    assert torch.allclose(out_b[39], net(b.augmenter.normalize(b.store.take(torch.tensor([39]))))[0])


def test_predict_runs_the_model_in_eval_mode_and_restores_it():
    x, y = torch.randn(30, 4), torch.randint(0, 2, (30,))
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ts = TrainingSet.from_tensors(x, y, model=net)
    modes = []
    net.register_forward_hook(lambda m, i, o: modes.append(m.training))
    net.train()
    ts.predict(net)
    assert modes and not any(modes) and net.training
    with torch.no_grad():
        net.eval()
        assert torch.allclose(ts.predict(net), net(x))


def test_dataset_labels_come_from_targets_and_bad_examples_are_named():
    x, y = _images(10)
    ds = PairDataset(x, y)
    ds.targets = (y + 1) % 3  # torchvision's convention wins over each item's y (no pass over the images)
    assert TrainingSet.from_dataset(ds).labels.tolist() == ((y + 1) % 3).tolist()
    floats = PairDataset(torch.rand(10, 3, 6, 5), y)  # after ToTensor: not what noisyfit augments
    with pytest.raises(DataError, match="before any ToTensor/Normalize"):
        TrainingSet.from_dataset(floats)
    with pytest.raises(DataError, match="9 labels for 10 examples"):
        TrainingSet.from_tensors(torch.zeros(10, 2), torch.zeros(9, dtype=torch.long))


def test_labels_that_are_not_class_indices_are_refused_with_the_first_bad_one():
    # a user's trial: float labels were truncated in silence, a -1 failed only in training as an IndexError
    x = torch.zeros(50, 2)
    with pytest.raises(DataError, match=re.escape("labels must be class indices 0, 1, ..., num_classes - 1, got "
                                                  "0.0408163 at position 1; pass each example's class")):
        TrainingSet.from_tensors(x, np.linspace(0, 2, 50))
    with pytest.raises(DataError, match=re.escape("got -1 at position 2;")):
        TrainingSet.from_tensors(x[:4], torch.tensor([0, 2, -1, 1]))
    with pytest.raises(DataError, match=re.escape("labels must be one class index per example [N], got shape "
                                                  "[4, 3] (one-hot? pass labels.argmax(1))")):
        TrainingSet.from_tensors(x[:4], torch.eye(3)[[0, 2, 1, 1]])
    whole = TrainingSet.from_tensors(x[:3], np.array([2.0, 0.0, 1.0]))  # whole numbers as floats are taken
    assert whole.labels.dtype == torch.long and whole.labels.tolist() == [2, 0, 1]
    images, y = _images(4)
    ds = PairDataset(images, y)
    ds.targets = np.array([0.0, 1.5, 2.0, 1.0])
    with pytest.raises(DataError, match=re.escape("got 1.5 at position 1;")):
        TrainingSet.from_dataset(ds)
    # without targets each item's label is read: a fraction there too (int() had truncated it in silence)
    class RawLabels(PairDataset):
        def __getitem__(self, i):
            return self.x[i], self.y[i]

    with pytest.raises(DataError, match=re.escape("got 1.5 at position 1;")):
        TrainingSet.from_dataset(RawLabels(images, torch.tensor([0.0, 1.5, 2.0, 1.0])))
    assert TrainingSet.from_dataset(RawLabels(images, torch.tensor([0, 1, 2, 1]))).labels.tolist() == [0, 1, 2, 1]
    with pytest.raises(DataError, match=re.escape("got 1e+20 at position 0;")):  # had wrapped to -2**63
        TrainingSet.from_tensors(x[:2], [1e20, 0.0])


def test_the_docstring_examples_run_as_written():
    import doctest

    import noisyfit.data.training_set as training_set
    import noisyfit.methods.context as context

    for module in (training_set, context):  # MethodContext's is a whole ELR loop through the method's hooks
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_to_moves_labels_examples_and_augmenter_together():
    x, y = _images(8)
    ts = TrainingSet.from_tensors(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y))
    streamed = TrainingSet.from_dataset(PairDataset(x, y))
    for t in (ts, streamed):
        assert t.to("meta") is t and t.device.type == "meta" and t.augmenter.mean.device.type == "meta"
    assert ts.store.x.device.type == "meta" and streamed.store.device.type == "meta"
