"""Unit: kernel.combined shares one transaction among concurrent callers, and a failing
change costs the others nothing. The legacy tables are replaced by a fake transaction that
notes what each change did and which commit it landed in; no root needed."""

from __future__ import annotations

import threading

import pytest

from warden_iptables_net import kernel


class FakeTransaction:
    """Stands for kernel.Iptables: changes are kept until commit, which records them."""

    commits: list[list[str]] = []
    fail_commit = False

    def __init__(self) -> None:
        self.pending: list[str] = []

    def note(self, what: str) -> None:
        self.pending.append(what)

    def commit(self) -> None:
        if FakeTransaction.fail_commit:
            raise kernel.KernelError("iptables: commit table filter: refused")
        FakeTransaction.commits.append(self.pending)


@pytest.fixture(autouse=True)
def fake_tables(monkeypatch, tmp_path):
    monkeypatch.setattr(kernel, "Iptables", FakeTransaction)
    monkeypatch.setattr(kernel, "XTABLES_LOCK", str(tmp_path / "xtables.lock"))
    FakeTransaction.commits = []
    FakeTransaction.fail_commit = False


def change(name: str, fail: bool = False):
    def work(ipt: FakeTransaction) -> str:
        ipt.note(name)
        if fail:
            raise kernel.KernelError(f"{name} refused")
        return f"{name} done"
    return work


def run_while_held(works) -> dict:
    """Start a caller per work while another caller's transaction is in progress, so all of
    them queue; return each one's result or error."""
    started, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def first(ipt: FakeTransaction) -> str:
        ipt.note("first")
        started.set()
        release.wait(5)
        return "first done"

    def call(name, work) -> None:
        try:
            outcome[name] = kernel.combined(work)
        except kernel.KernelError as error:
            outcome[name] = error

    holder = threading.Thread(target=call, args=("first", first))
    holder.start()
    assert started.wait(5)
    callers = [threading.Thread(target=call, args=(name, work)) for name, work in works]
    for caller in callers:
        caller.start()
    while len(kernel._waiting) < len(works):  # all queued behind the holder
        threading.Event().wait(0.001)
    release.set()
    for thread in [holder, *callers]:
        thread.join(5)
        assert not thread.is_alive()
    return outcome


def test_a_lone_change_gets_its_own_transaction_and_result() -> None:
    assert kernel.combined(change("a")) == "a done"
    assert FakeTransaction.commits == [["a"]]


def test_changes_queued_behind_a_transaction_share_the_next_one() -> None:
    outcome = run_while_held([(name, change(name)) for name in "bcde"])
    assert outcome == {name: f"{name} done" for name in ["first", *"bcde"]}
    assert FakeTransaction.commits[0] == ["first"]
    assert len(FakeTransaction.commits) == 2
    assert sorted(FakeTransaction.commits[1]) == list("bcde")


def test_a_failing_change_fails_alone_and_the_others_land_once() -> None:
    outcome = run_while_held([("b", change("b")), ("bad", change("bad", fail=True)),
                              ("c", change("c"))])
    assert isinstance(outcome["bad"], kernel.KernelError)
    assert str(outcome["bad"]) == "bad refused"
    assert outcome["b"] == "b done" and outcome["c"] == "c done"
    landed = [name for commit in FakeTransaction.commits for name in commit]
    assert sorted(landed) == ["b", "c", "first"]  # the shared attempt committed nothing


def test_a_refused_commit_reaches_every_caller_whose_change_it_held() -> None:
    FakeTransaction.fail_commit = True
    with pytest.raises(kernel.KernelError, match="commit table filter"):
        kernel.combined(change("a"))
    FakeTransaction.fail_commit = False
    assert kernel.combined(change("b")) == "b done"  # nothing left stuck
    assert FakeTransaction.commits == [["b"]]


def test_an_unusable_lock_file_fails_the_change_without_blocking_the_next(monkeypatch,
                                                                           tmp_path) -> None:
    monkeypatch.setattr(kernel, "XTABLES_LOCK", str(tmp_path / "missing" / "xtables.lock"))
    with pytest.raises(FileNotFoundError):
        kernel.combined(change("a"))
    monkeypatch.setattr(kernel, "XTABLES_LOCK", str(tmp_path / "xtables.lock"))
    assert kernel.combined(change("b")) == "b done"
