"""params.yaml validation and the paths every stage shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import REPO_ROOT, ConfigError, DataParams, Paths, load_params, mirror_dir


def write_params(folder: Path, text: str) -> Path:
    path = folder / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repo_params_load_with_data_defaults():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data == DataParams(
        dataset="ml-100k", split="u1", test_fraction=0.1, seed=42, rbm_threshold=3
    )


def test_empty_file_means_defaults(tmp_path):
    assert load_params(write_params(tmp_path, "")).data == DataParams()


def test_ml1m_random_split_is_valid(tmp_path):
    path = write_params(tmp_path, "data:\n  dataset: ml-1m\n  split: random\n")
    assert load_params(path).data.dataset == "ml-1m"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("data: [unclosed\n", ["not valid YAML"], id="bad-yaml"),
        pytest.param(
            "data:\n  datset: ml-100k\n", ["data.datset", "Extra inputs"], id="unknown-key"
        ),
        pytest.param("trian:\n  seed: 1\n", ["trian", "Extra inputs"], id="unknown-section"),
        pytest.param(
            "data:\n  rbm_threshold: 9\n",
            ["data.rbm_threshold", "less than or equal"],
            id="threshold-above-5",
        ),
        pytest.param(
            "data:\n  test_fraction: 1.5\n", ["data.test_fraction"], id="fraction-above-1"
        ),
        pytest.param(
            "data:\n  dataset: ml-20m\n", ["data.dataset", "ml-100k"], id="unknown-dataset"
        ),
        pytest.param(
            "data:\n  dataset: ml-1m\n  split: u1\n",
            ["split 'u1' is not available for ml-1m", "random"],
            id="split-for-1m",
        ),
        pytest.param(
            "data:\n  split: random\n",
            ["split 'random' is not available for ml-100k", "u1"],
            id="split-for-100k",
        ),
        pytest.param("data:\n  seed: forty-two\n", ["data.seed", "integer"], id="bad-type"),
    ],
)
def test_bad_params_name_file_and_key(tmp_path, text, expected):
    path = write_params(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message, message


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"params\.yaml: file not found"):
        load_params(tmp_path / "params.yaml")


def test_paths_follow_movierec_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    paths = Paths()
    assert paths.root == tmp_path.resolve()
    assert paths.raw_dataset("ml-1m") == tmp_path.resolve() / "data" / "raw" / "ml-1m"
    assert paths.prepared("ml-100k") == tmp_path.resolve() / "data" / "preprocessed" / "ml-100k"
    assert Paths(tmp_path / "other").root == (tmp_path / "other").resolve()  # explicit wins


def test_paths_default_to_the_repo(monkeypatch):
    monkeypatch.delenv("MOVIEREC_HOME", raising=False)
    assert Paths().root == REPO_ROOT


def test_mirror_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    assert mirror_dir() is None
    monkeypatch.setenv("MOVIELENS_MIRROR", str(tmp_path))
    assert mirror_dir() == tmp_path.resolve()
