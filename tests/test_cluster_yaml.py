"""cluster.yaml passes Ray's own cluster-launcher validation, pins the Ray version, and explains every key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"


def _load() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_passes_ray_validation() -> None:
    config = prepare_config(copy.deepcopy(_load()))  # fills provider defaults, as `ray up` does
    validate_config(config)
    assert config["head_node_type"] == "head"
    assert config["available_node_types"]["gpu_worker"]["max_workers"] == 8
    assert config["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_ray_validation_rejects_a_misspelled_key() -> None:
    bad = _load()
    bad["max_wrkers"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_wrkers"):
        validate_config(prepare_config(bad))


def test_image_is_pinned_to_the_installed_ray_and_auth_is_on() -> None:
    config = _load()
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    for cmd in (config["head_start_ray_commands"][-1], config["worker_start_ray_commands"][-1]):
        assert "RAY_AUTH_MODE=token" in cmd
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]  # tunnel, not exposed
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("pip install" in c and "~/scalefit" in c for c in config["setup_commands"])


def test_every_key_has_a_comment() -> None:
    lines = CLUSTER.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*(- )?[\w.\"~/]+:", line) and not line.lstrip().startswith("#"):
            above = lines[i - 1].strip() if i else ""
            assert "#" in line or above.startswith("#") or above.startswith("- "), f"line {i + 1}: {line}"
