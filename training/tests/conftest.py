import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # training/ (the automr package)
sys.path.insert(0, HERE)  # ort helper


@pytest.fixture(scope="session")
def tiny_synth():
    from automr.synthetic import synthetic

    return synthetic(n_users=240, n_items=210, seed=3)


@pytest.fixture(scope="session")
def tiny_trained(tiny_synth):
    """A small model trained briefly on tiny synthetic data (shared by the model and export tests)."""
    from automr.model import ModelConfig
    from automr.train import TrainConfig, train_model

    mcfg = ModelConfig(n_items=tiny_synth.n_items, d_model=32, n_layers=2, n_heads=2, split_layer=1, dropout=0.0)
    tcfg = TrainConfig(epochs=4, batch_size=64, lr=5e-3, seed=0, progress=False, patience=10, mem_frac=0.5, max_mem=4)
    model, info = train_model(tiny_synth, mcfg, tcfg)
    return model, info
