"""The trainer's process keeps freed memory for its next step (allocator.py)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

import rnnkit
from rnnkit import allocator

LIBC, VERSION = platform.libc_ver()
glibc = pytest.mark.skipif(LIBC != "glibc" or tuple(map(int, VERSION.split("."))) < (2, 33),
                           reason="glibc's malloc, 2.33 or newer (mallinfo2)")

# In a fresh process: the bytes glibc serves by mmap while a 64 MB tensor is alive, and the
# free bytes the heap holds once it is freed, before and after keep_freed_memory().
PROBE = textwrap.dedent("""
    import ctypes, torch
    from rnnkit.allocator import keep_freed_memory
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
                    "keepcost".split()]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    def one_block():
        t = torch.ones(64 << 20, dtype=torch.uint8)
        mapped = libc.mallinfo2().hblkhd
        del t
        return mapped, libc.mallinfo2().fordblks
    before = one_block()
    assert keep_freed_memory()
    after = one_block()
    print(*before, *after)
""")


@glibc
def test_large_blocks_come_from_the_heap_and_stay_after_free():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    mapped_before, kept_before, mapped_after, kept_after = map(int, done.stdout.split())
    block = 64 << 20
    assert mapped_before >= block  # glibc's default: its own pages, handed back on free
    assert kept_before < block
    assert mapped_after < block  # now from the heap...
    assert kept_after >= block  # ...and still the process's after the free


def test_nothing_changes_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert allocator.keep_freed_memory() is False


def test_the_trainer_keeps_freed_memory(tmp_path, hamlet, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={"data": str(hamlet), "max_steps": 2,
                                                         "eval_every": 2, "threads": 1})
    rnnkit.train(model_cfg, cfg, out=tmp_path / "run", log=lambda _: None)
    assert calls
