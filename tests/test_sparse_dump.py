"""A dump with 64 GB of hole-backed memory opens like the 200 MB one and answers the same."""

import io
import os

from bench.sparse import make_sparse_copy
from pmdb.config import Config
from pmdb.dumps.zst import decompressed
from pmdb.opener import open_target
from pmdb.session import Session
from tests.conftest import FIXTURES, need_fixture


def _ps(path: str) -> str:
    out = io.StringIO()
    target = open_target(path, config=Config())
    try:
        assert Session(target, stdout=out, stderr=out).run_line("::ps")
    finally:
        target.close()
    return out.getvalue()


def test_sparse_64g_copy_answers_like_the_original(tmp_path):
    elf = decompressed(str(need_fixture(FIXTURES / "linux-6.1-x86_64" / "vmcore.elf.zst")))
    big = make_sparse_copy(elf, tmp_path / "vmcore-64g.elf")
    assert os.path.getsize(big) > 64 << 30
    assert os.stat(big).st_blocks * 512 < 2 * os.path.getsize(elf)   # really sparse
    assert _ps(str(big)) == _ps(elf)
    target = open_target(str(big), config=Config())
    try:
        phys = target.os.dump.space()
        assert phys.read((1 << 32) + (40 << 30), 8) == bytes(8)   # inside the hole: zeros, no error
    finally:
        target.close()
