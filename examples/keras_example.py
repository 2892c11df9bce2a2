"""lossdoctor in a Keras 3 fit: one callback.

    KERAS_BACKEND=torch python examples/keras_example.py                # softmax output + from_logits=True
    KERAS_BACKEND=torch python examples/keras_example.py --rate-too-high  # raw logits, but Adam at 1.0
    KERAS_BACKEND=torch python examples/keras_example.py --healthy      # raw logits, Adam at 1e-3
    KERAS_BACKEND=torch python examples/keras_example.py --html report.html --json report.json

Needs ``pip install 'lossdoctor[keras]'``. The model checks and the curves work on every Keras
backend; with the torch backend the callback also hooks the model with ``lossdoctor.watch``.
"""
import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from lossdoctor.integrations.keras import LossDoctorCallback  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--healthy", action="store_true", help="no softmax in the output layer")
    parser.add_argument("--rate-too-high", action="store_true", help="no softmax, but Adam at 1.0")
    parser.add_argument("--html", help="write the report as HTML here")
    parser.add_argument("--json", help="write the report as JSON here")
    args = parser.parse_args()
    raw_logits = args.healthy or args.rate_too_high
    keras.utils.set_random_seed(0)
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation=None if raw_logits else "softmax", name="logits"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1.0 if args.rate_too_high else 1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    doctor = LossDoctorCallback(html=args.html, json=args.json)
    with doctor:  # takes the watch's hooks off the model even if fit() fails
        model.fit(X[:1400], y[:1400], validation_data=(X[1400:], y[1400:]), epochs=5, batch_size=32, verbose=0,
                  callbacks=[doctor])
    print(f"verdict={doctor.report.verdict} codes={','.join(doctor.report.codes)}")


if __name__ == "__main__":
    main()
