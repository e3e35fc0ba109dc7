"""The --model loader: built-in names, path/to/file.py:Class, package.module:Class, args."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annosim.errors import ConfigError
from annosim.models.registry import load_model, model_identity

TESTS = Path(__file__).resolve().parent


def test_file_path_plugin_with_args():
    model = load_model(f"{TESTS / 'plugin_models.py'}:ThresholdGrow", {"tolerance": "25"})
    assert type(model).__name__ == "ThresholdGrow" and model.tolerance == 25.0


def test_module_path_plugin():
    model = load_model("annosim.models.base:SliceModelBase")
    model.set_volume(np.zeros((2, 3, 4), np.float32), (1, 1, 1))
    assert model.shape == (2, 3, 4)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no-such-model", "expected a built-in name"),
        ("missing_file.py:Model", "model file not found"),
        ("annosim.nothere:Model", "not found"),
        ("annosim.models.base:Nope", "has no attribute 'Nope'"),
        ("collections:OrderedDict", "lacks the plugin method"),
    ],
)
def test_bad_model_specs_are_one_line_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_model(spec)
    assert "\n" not in str(info.value)


def test_unknown_model_arg_is_a_config_error():
    with pytest.raises(ConfigError, match="bad --model-arg"):
        load_model(f"{TESTS / 'plugin_models.py'}:ThresholdGrow", {"colour": "red"})


def test_model_identity_records_checkpoint_sha256(tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"abc")
    ident = model_identity("m", {"checkpoint": str(ckpt)})
    assert ident["checkpoint_sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
