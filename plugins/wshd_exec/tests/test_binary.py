"""Which wshd the driver runs when the config names none: the wheel's, else the checkout's."""

from pathlib import Path

from warden_wshd_exec import binary


def test_a_configured_path_wins():
    assert binary.configured_binary("/opt/wshd") == Path("/opt/wshd")


def test_without_one_the_packaged_binary_beside_the_package(monkeypatch, tmp_path):
    packaged = tmp_path / "bin" / "wshd"
    packaged.parent.mkdir()
    packaged.write_bytes(b"")
    monkeypatch.setattr(binary, "PACKAGED", packaged)
    assert binary.configured_binary(None) == packaged


def test_an_editable_install_falls_back_to_the_checkouts_build(monkeypatch, tmp_path):
    monkeypatch.setattr(binary, "PACKAGED", tmp_path / "bin" / "wshd")
    assert binary.configured_binary(None) == binary.CHECKOUT
    assert binary.CHECKOUT.parts[-3:] == ("native", "wshd", "wshd")
