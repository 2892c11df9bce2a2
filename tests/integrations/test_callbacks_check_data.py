"""The Lightning, Hugging Face and Keras callbacks run the data room's checks on the training data at
the end of training: real small models trained on scikit-learn's digits with shuffled labels (the
fault) and with their own labels (the healthy twin)."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossdoctor import InputError, check_data

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")
keras = pytest.importorskip("keras")

DATA_CODES = ("data.no_signal", "data.label_noise")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)


@pytest.fixture(scope="module")
def shuffled(digits):
    X, y = digits
    return X, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]


@pytest.fixture(scope="module")
def data_room_says(shuffled):
    """The first finding of the data room itself (check_data) on the shuffled rows."""
    code = check_data(*shuffled).findings[0].code
    assert code in DATA_CODES
    return code


# -- Lightning -------------------------------------------------------------------------------------
class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def fit_lightning(data, **callback_kwargs):
    from lossdoctor.integrations.lightning import LossDoctorCallback

    torch.manual_seed(0)
    callback = LossDoctorCallback(every=20, print_report=False, wandb=False, **callback_kwargs)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier(), DataLoader(TensorDataset(*data), batch_size=32, shuffle=True))
    return callback


def test_lightning_names_shuffled_labels_first_as_the_data_room_does(shuffled, data_room_says):
    report = fit_lightning(shuffled).report
    assert report.findings[0].code == data_room_says
    assert report.metadata["data"]["checked"] is True


def test_lightning_on_the_same_digits_with_their_labels_is_clean(digits):
    report = fit_lightning(digits).report
    assert report.metadata["data"]["checked"] is True
    assert not report.warnings(), [f.code for f in report.warnings()]


def test_lightning_data_check_leaves_the_global_rng_where_training_left_it(digits):
    fit_lightning(digits, check_data=False)
    without = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
    fit_lightning(digits, check_data=True)
    assert torch.equal(without[0], torch.get_rng_state())
    assert np.array_equal(without[1], np.random.get_state()[1])


# -- Hugging Face Trainer ----------------------------------------------------------------------------
class Rows(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"x": self.X[i], "labels": self.y[i]}


class ReturnsLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x, labels=None, **_):
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def fit_huggingface(data, tmp_path):
    from transformers import Trainer, TrainingArguments

    from lossdoctor.integrations.huggingface import LossDoctorCallback

    callback = LossDoctorCallback(print_report=False, wandb=False)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=150, per_device_train_batch_size=32,
                             learning_rate=1e-3, logging_steps=10, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, dataloader_num_workers=0, seed=0, remove_unused_columns=False)
    Trainer(model=ReturnsLoss(), args=args, train_dataset=Rows(*data), callbacks=[callback]).train()
    return callback


def test_huggingface_names_shuffled_labels_first_as_the_data_room_does(shuffled, data_room_says, tmp_path):
    report = fit_huggingface(shuffled, tmp_path).report
    assert report.findings[0].code == data_room_says
    assert report.metadata["data"]["checked"] is True


def test_huggingface_on_the_same_digits_with_their_labels_is_clean(digits, tmp_path):
    report = fit_huggingface(digits, tmp_path).report
    assert report.metadata["data"]["checked"] is True
    assert not report.warnings(), [f.code for f in report.warnings()]


# -- Keras: the callback cannot see fit()'s data; data= gives it -------------------------------------
def fit_keras(rows, **callback_kwargs):
    from lossdoctor.integrations.keras import LossDoctorCallback

    X, y = (t.numpy() for t in rows)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = LossDoctorCallback(print_report=False, wandb=False, **callback_kwargs)
    model.fit(X, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback])
    return callback


def test_keras_given_data_names_shuffled_labels_first_as_the_data_room_does(shuffled, data_room_says):
    report = fit_keras(shuffled, data=tuple(t.numpy() for t in shuffled)).report
    assert report.findings[0].code == data_room_says


def test_keras_given_the_digits_with_their_labels_is_clean(digits):
    report = fit_keras(digits, data=tuple(t.numpy() for t in digits)).report
    assert report.metadata["data"]["checked"] is True
    assert not report.warnings(), [f.code for f in report.warnings()]


def test_keras_without_data_checks_no_data():
    X, y = load_digits(return_X_y=True)
    report = fit_keras((torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y))).report
    assert "data" not in report.metadata


def test_keras_data_of_a_wrong_kind_is_a_clear_error_when_the_callback_is_made():
    from lossdoctor.integrations.keras import LossDoctorCallback

    with pytest.raises(InputError, match=r"data= must be the training data as \(x, y\)"):
        LossDoctorCallback(data=np.zeros((10, 4)))
