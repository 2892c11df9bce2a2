"""lossdoctor.watch(model, optimizer, data=...): the data room's checks on the training data at report
time, on real digits (scikit-learn), with the user's RNGs, loader and iteration left as they were."""
import random

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import lossdoctor
from lossdoctor import InputError, check_data

DATA_CODES = ("data.no_signal", "data.label_noise")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / (X.std(0) + 1e-8), dtype=torch.float32)
    return X, torch.tensor(y)


@pytest.fixture(scope="module")
def shuffled(digits):
    X, y = digits
    return X, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]


def train_watched(X, y, data, epochs=3):
    """A plain loop over a DataLoader, watched with data=; returns the watch's report."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True)
    with lossdoctor.watch(model, optimizer, every=10, wandb=False, data=data(loader) if callable(data) else data) \
            as doctor:
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                doctor.step(loss)
        return doctor.report()


def test_shuffled_labels_are_named_first_as_the_data_room_names_them(shuffled):
    X, y = shuffled
    expected = check_data(X, y).findings[0].code  # what the data room itself says of these rows
    assert expected in DATA_CODES
    report = train_watched(X, y, data=lambda loader: loader)
    assert report.findings[0].code == expected
    assert report.findings[0].source.startswith("data:")
    assert report.metadata["data"]["checked"] is True


def test_the_same_digits_with_their_labels_are_clean(digits):
    X, y = digits
    report = train_watched(X, y, data=lambda loader: loader)
    assert report.metadata["data"]["checked"] is True
    assert not report.warnings(), [f.code for f in report.warnings()]


@pytest.mark.parametrize("form", ["pair", "dataset"])
def test_a_pair_or_a_dataset_goes_the_same_path_as_a_loader(shuffled, form):
    X, y = shuffled
    data = (X, y) if form == "pair" else TensorDataset(X, y)
    report = train_watched(X, y, data=data, epochs=1)
    assert report.findings[0].code in DATA_CODES


def test_without_data_no_data_check_runs(shuffled):
    X, y = shuffled
    report = train_watched(X, y, data=None, epochs=1)
    assert "data" not in report.metadata
    assert not any(f.source and f.source.startswith("data:") for f in report.findings)


class Augmented(Dataset):
    """A Dataset whose items draw from the global RNGs (as random augmentations do)."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        noise = 0.01 * torch.randn(self.X.shape[1]) + 0.0 * np.random.rand() + 0.0 * random.random()
        return self.X[i] + noise, self.y[i]


def _rng_states():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def test_reading_the_data_leaves_the_global_rngs_and_the_loaders_iteration_as_they_were(digits):
    X, y = digits
    dataset = Augmented(X, y)

    def loader():
        return DataLoader(dataset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(5))

    watched, twin = loader(), loader()
    model = nn.Sequential(nn.Linear(64, 10))
    doctor = lossdoctor.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), wandb=False, data=watched)
    with doctor:
        doctor.step(nn.functional.cross_entropy(model(X[:8]), y[:8]))
        before = _rng_states()
        generator_before = watched.generator.get_state().clone()
        report = doctor.report()
        after = _rng_states()
    assert report.metadata["data"]["checked"] is True
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1])
    assert before[2] == after[2]
    assert torch.equal(generator_before, watched.generator.get_state())
    # the watched loader yields the same batches, in the same order, as an identical loader never read
    torch.manual_seed(3)
    first = [yb for _, yb in watched]
    torch.manual_seed(3)
    second = [yb for _, yb in twin]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


class Broken(Dataset):
    def __len__(self):
        return 100

    def __getitem__(self, i):
        raise OSError(f"image {i} is missing")


class Stream(IterableDataset):
    def __init__(self, X, y):
        self.X, self.y, self.read = X, y, 0

    def __iter__(self):
        for row in range(len(self.X)):
            self.read += 1
            yield self.X[row], self.y[row]


def test_data_that_cannot_be_read_becomes_a_note_and_the_report_is_still_made(digits):
    X, y = digits
    report = train_watched(X, y, data=Broken(), epochs=1)
    assert report.metadata["data"]["checked"] is False
    assert "image 0 is missing" in " ".join(report.metadata["data"]["notes"])
    assert report.verdict is not None


def test_an_iterable_dataset_is_not_consumed_and_says_why(digits):
    X, y = digits
    stream = Stream(X, y)
    report = train_watched(X, y, data=DataLoader(stream, batch_size=32), epochs=1)
    assert stream.read == 0
    assert report.metadata["data"]["checked"] is False
    assert "iterable" in " ".join(report.metadata["data"]["notes"])


def test_data_of_a_wrong_kind_is_a_clear_error_before_training():
    model = nn.Linear(4, 2)
    with pytest.raises(InputError, match="data= must be"):
        lossdoctor.watch(model, data=3)


class CountingReads(Dataset):
    """Unlabelled rows (no baseline to fit: the test is about which rows are read), counting reads."""

    def __init__(self, X):
        self.X, self.reads = X, []

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads.append(i)
        return self.X[i]


def test_a_large_dataset_is_read_as_a_bounded_seeded_sample(digits):
    from lossdoctor.integrations._common import DATA_SAMPLE_ROWS, training_data_facts

    X, _ = digits
    big = CountingReads(X.repeat(DATA_SAMPLE_ROWS // len(X) + 2, 1))
    notes_a, notes_b = [], []
    facts_a = training_data_facts(big, notes_a)
    first = list(big.reads)
    facts_b = training_data_facts(big, notes_b)
    assert len(first) == DATA_SAMPLE_ROWS < len(big)
    assert big.reads[len(first):] == first  # the same rows every time
    assert facts_a.rows_profiled == facts_b.rows_profiled == DATA_SAMPLE_ROWS
    assert any(str(DATA_SAMPLE_ROWS) in n for n in notes_a)
