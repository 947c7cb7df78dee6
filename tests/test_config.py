"""MSST YAML configs parse safely and bad keys get a helpful message."""

from __future__ import annotations

import pytest
import yaml

from stemforge.config import load_config
from stemforge.errors import StemforgeError


def test_msst_tuple_tag_accepted_without_unsafe_loading(msst_ref):
    cfg = load_config(msst_ref / "mdx23c_tiny.yaml")
    assert cfg.raw["augmentations"]["mixup_probs"] == (0.2, 0.02)
    assert cfg.stems == ("vocals", "bass", "drums", "other")
    assert cfg.chunk_size == 8064 and cfg.inference.num_overlap == 2


def test_python_object_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("audio: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(StemforgeError, match="evil.yaml"):
        load_config(path)


def _write(tmp_path, msst_ref, edit):
    data = yaml.load((msst_ref / "mdx23c_tiny.yaml").read_text(), Loader=yaml.FullLoader)
    edit(data)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_names_closest(tmp_path, msst_ref):
    path = _write(tmp_path, msst_ref, lambda d: d["model"].update(num_subband=4))
    with pytest.raises(StemforgeError, match=r"model.num_subband.*did you mean 'num_subbands'"):
        load_config(path)


def test_target_instrument_selects_one_stem(tmp_path, msst_ref):
    path = _write(tmp_path, msst_ref, lambda d: d["training"].update(target_instrument="vocals"))
    assert load_config(path).stems == ("vocals",)


def test_impossible_geometry_is_explained(tmp_path, msst_ref):
    path = _write(tmp_path, msst_ref, lambda d: d["audio"].update(chunk_size=8000))
    with pytest.raises(StemforgeError, match="chunk_size"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(StemforgeError, match="not found"):
        load_config(tmp_path / "none.yaml")
