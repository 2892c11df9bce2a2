"""numpy float64 arrays straight from scikit-learn into a float32 model: cast with a note."""
import numpy as np
from _digits import mlp, recipe
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

EXPECT = "Report"


def build():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)  # float64
    return recipe(model=mlp(), train=(X[:600], y[:600].astype(np.int64)))
