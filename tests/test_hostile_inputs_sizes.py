"""Tiny inputs that asked for huge allocations, and files that are not files, are refused by name
before anything is allocated or read: an expert-placement instance with 1e11 slots (every
evaluator raised MemoryError), a decode-routing one with 1e11 workers (a list of that many
queues), a gzip file expanding past MAX_TEXT_BYTES, /dev/zero (read forever) and a FIFO (blocks)."""

from __future__ import annotations

import gzip
import json
import os
import signal

import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.core import instance as instance_mod
from servopt.instances import traces
from servopt.instances.library import LIBRARY_DIR

MAX_SLOTS = 1_000_000  # instances/expert_placement.py
MAX_WORKERS = 100_000  # instances/decode_routing.py


def _data(name: str) -> dict:
    (path,) = LIBRARY_DIR.glob(f"*/{name}.json")
    return json.loads(path.read_text())


def test_expert_placement_slots_beyond_the_cap_are_refused_on_load():
    data = _data("ep_tiny")
    data["fields"]["num_nodes"] = 10**11  # 9e11 slots: MemoryError in every evaluator before
    with pytest.raises(InvalidInstanceError, match=f"expert slots: at most {MAX_SLOTS:,}"):
        servopt.load(json.dumps(data))
    fields = data["fields"]
    per_node = fields.get("gpus_per_node", 4) * fields.get("slots_per_gpu", 2)
    fields["num_nodes"] = MAX_SLOTS // per_node  # at the cap: loads (no allocation of slots)
    assert servopt.load(json.dumps(data)).num_slots <= MAX_SLOTS


def test_decode_routing_workers_beyond_the_cap_are_refused_on_load():
    data = _data("dr_hindsight_8x2")
    data["fields"]["workers"] = 10**11
    with pytest.raises(InvalidInstanceError, match=f"workers is 100,000,000,000: at most "
                                                   f"{MAX_WORKERS:,}"):
        servopt.load(json.dumps(data))
    data["fields"]["workers"] = MAX_WORKERS
    assert servopt.load(json.dumps(data)).workers == MAX_WORKERS


def test_a_gzip_file_expanding_past_the_cap_is_refused(tmp_path, monkeypatch):
    text = json.dumps(_data("bs_offline_10")).encode()
    path = tmp_path / "small.json.gz"
    path.write_bytes(gzip.compress(text))
    monkeypatch.setattr(instance_mod, "MAX_TEXT_BYTES", len(text) - 1)
    with pytest.raises(InvalidInstanceError, match=r"small\.json\.gz: more than .* bytes of text"):
        servopt.load(path)
    plain = tmp_path / "plain.json"
    plain.write_bytes(text)
    with pytest.raises(InvalidInstanceError, match=r"plain\.json: more than"):
        servopt.load(plain)
    monkeypatch.setattr(instance_mod, "MAX_TEXT_BYTES", len(text))  # exactly at the cap: read
    assert servopt.load(path).n == servopt.load(plain).n == 10


def test_a_plain_file_past_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """The plain file's size is known from its stat: limits.md measured instances.load holding
    the first 1 GiB of an over-cap file before refusing it."""
    text = json.dumps(_data("bs_offline_10")).encode()
    plain = tmp_path / "plain.json"
    plain.write_bytes(text)
    monkeypatch.setattr(instance_mod, "MAX_TEXT_BYTES", len(text) - 1)
    real_open, largest = open, []

    class Counted:
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, size=-1):
            data = self.handle.read(size)
            largest.append(len(data))
            return data

    monkeypatch.setattr(instance_mod, "open", lambda *a, **k: Counted(real_open(*a, **k)),
                        raising=False)
    with pytest.raises(InvalidInstanceError, match=r"plain\.json: more than"):
        servopt.load(plain)
    assert max(largest, default=0) <= 2  # its first two bytes (gzip or not), never the text


@pytest.mark.parametrize("kind", ["mooncake", "azure"])
def test_a_trace_past_the_cap_is_refused_before_it_is_parsed(tmp_path, monkeypatch, kind):
    """The streaming trace readers had no cap (R4): a 258 KB gzip Mooncake file of 76 MB of text
    was read whole (429 MB peak)."""
    if kind == "mooncake":
        line = json.dumps({"timestamp": 0, "input_length": 512, "output_length": 10,
                           "hash_ids": [0]}) + "\n"
        text, read = (line * 50).encode(), traces.read_mooncake
    else:
        text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                + "2023-11-16 18:15:46.6805900,374,44\n" * 50).encode()
        read = traces.read_azure
    packed, plain = tmp_path / f"{kind}.gz", tmp_path / f"{kind}.txt"
    packed.write_bytes(gzip.compress(text))
    plain.write_bytes(text)
    monkeypatch.setattr(instance_mod, "MAX_TEXT_BYTES", len(text) - 1)
    with pytest.raises(InvalidInstanceError, match=r"more than .* bytes of text once decompressed"):
        read(packed)
    with pytest.raises(InvalidInstanceError, match=r"\.txt: more than .* bytes of text: cut"):
        read(plain)
    monkeypatch.setattr(instance_mod, "MAX_TEXT_BYTES", len(text))  # exactly at the cap: read
    assert len(read(packed)) == len(read(plain)) == 50


@pytest.fixture
def alarm():
    """Fail (not hang) a test that blocks for more than 10 s."""
    def ring(*_):
        raise TimeoutError("blocked reading")
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_device_or_a_fifo_is_refused_before_it_is_opened(tmp_path, alarm):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(InvalidInstanceError, match="not a regular file"):
            servopt.load(path)
        with pytest.raises(InvalidInstanceError, match="not a regular trace file"):
            traces.read_mooncake(path)
        with pytest.raises(InvalidInstanceError, match="not a regular trace file"):
            traces.read_expert_load(path)
