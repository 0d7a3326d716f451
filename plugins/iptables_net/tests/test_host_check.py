"""The driver's start-up check for the iptables matches its rules need: registered in the
kernel, or a module the kernel can load."""

from __future__ import annotations

import os

from warden_iptables_net import kernel


def fake_kernel(monkeypatch, tmp_path, registered: str | None,
                modules_dep: str = "") -> None:
    matches = tmp_path / "ip_tables_matches"  # absent until ip_tables is loaded
    if registered is not None:
        matches.write_text(registered)
    release = tmp_path / "modules" / os.uname().release
    release.mkdir(parents=True)
    (release / "modules.dep").write_text(modules_dep)
    monkeypatch.setattr(kernel, "IPTABLES_MATCHES", str(matches))
    monkeypatch.setattr(kernel, "MODULES", str(tmp_path / "modules"))


def test_a_match_neither_registered_nor_loadable_is_named_with_its_kernel_option(
        monkeypatch, tmp_path) -> None:
    fake_kernel(monkeypatch, tmp_path, "tcp\nudp\ndevgroup\n")
    assert kernel.missing_matches() == ["rpfilter"]
    assert kernel.host_unavailable_reason() == (
        "the kernel has no iptables match rpfilter (CONFIG_IP_NF_MATCH_RPFILTER)")


def test_a_loadable_module_is_enough(monkeypatch, tmp_path) -> None:
    fake_kernel(monkeypatch, tmp_path, "tcp\n",
                "kernel/net/netfilter/xt_devgroup.ko.xz:\n"
                "kernel/net/ipv4/netfilter/ipt_rpfilter.ko.xz: kernel/net/netfilter/x.ko\n")
    assert kernel.missing_matches() == []


def test_before_ip_tables_is_loaded_the_modules_say(monkeypatch, tmp_path) -> None:
    fake_kernel(monkeypatch, tmp_path, None, "kernel/net/netfilter/xt_devgroup.ko:\n")
    assert kernel.missing_matches() == ["rpfilter"]


def test_this_kernel_has_them() -> None:
    assert kernel.missing_matches() == []
