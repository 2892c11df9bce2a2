"""One-line integrations of lossdoctor into the frameworks people train with.

Each submodule defines a ``LossDoctorCallback`` for its framework and imports that framework only
when the submodule itself is imported, so that ``import lossdoctor.integrations`` stays free of
Lightning, transformers and Keras:

* ``lossdoctor.integrations.lightning.LossDoctorCallback`` -- ``lightning.pytorch.Trainer(callbacks=[...])``
* ``lossdoctor.integrations.huggingface.LossDoctorCallback`` -- ``transformers.Trainer(callbacks=[...])``
* ``lossdoctor.integrations.keras.LossDoctorCallback`` -- ``model.fit(..., callbacks=[...])``

After training, each callback holds the final :class:`lossdoctor.Report` as ``callback.report``.
For hyper-parameter searches, the same holds for Optuna and Ray Tune, which stop the trials that
cannot converge: ``lossdoctor.integrations.optuna.LossDoctorPruner`` and
``lossdoctor.integrations.ray.LossDoctorStopper``.
"""
from __future__ import annotations

__all__: list[str] = []
