"""Mooncake JSONL: hash ids against input lengths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from servopt.core import InvalidInstanceError
from servopt.instances import traces


def _trace(tmp_path, *lines, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def _line(t, tokens, ids, out=1):
    return {"timestamp": t, "input_length": tokens, "output_length": out, "hash_ids": ids}


# by hand: a prompt of n tokens fills ceil(n / 512) blocks of 512 tokens
@pytest.mark.parametrize("tokens, blocks", [(0, 0), (1, 1), (511, 1), (512, 1), (513, 2), (1024, 2),
                                            (1025, 3), (40160, 79)])
def test_hash_ids_that_fill_the_prompt_are_read(tmp_path, tokens, blocks):
    ids = list(range(100, 100 + blocks))
    frame = traces.read_mooncake(_trace(tmp_path, _line(0, tokens, ids)))
    assert frame["prompt_tokens"].tolist() == [tokens]
    assert [list(b) for b in frame["block_ids"]] == [ids]


@pytest.mark.parametrize("tokens, blocks, needed", [(1000, 3, 2), (1025, 2, 3), (0, 1, 0), (5, 0, 1),
                                                    (40160, 628, 79)])
def test_hash_ids_that_disagree_with_input_length_are_refused(tmp_path, tokens, blocks, needed):
    # they had been read as they were: caching counted the ids, decode routing the length, so
    # the two decisions saw different prompts (ids hashed over 64-token blocks: 8x the blocks)
    path = _trace(tmp_path, _line(0, 600, [0, 1]), "", _line(5, tokens, list(range(10, 10 + blocks))),
                  _line(9, 20, [3]))
    with pytest.raises(InvalidInstanceError) as err:
        traces.read_mooncake(path)
    assert str(err.value) == (
        f"{path}: line 3: {blocks} hash_ids for input_length {tokens}, which is {needed} blocks "
        f"of 512 tokens (ceil({tokens} / 512)): every hash id is one 512-token block of the prompt "
        "(ids over another block size?)")


def test_the_first_disagreeing_line_of_the_file_is_named_not_the_first_in_time(tmp_path):
    path = _trace(tmp_path, _line(900, 100, [1]), _line(500, 600, [1]), _line(0, 600, [1, 2, 3]))
    with pytest.raises(InvalidInstanceError, match=r"line 2: 1 hash_ids for input_length 600"):
        traces.read_mooncake(path)


def test_lines_without_hash_ids_are_not_held_to_blocks(tmp_path):
    path = _trace(tmp_path, {"timestamp": 0, "input_length": 5000, "output_length": 3},
                  {"timestamp": 7, "input_length": 0, "output_length": 1})
    frame = traces.read_mooncake(path)
    assert frame["prompt_tokens"].tolist() == [5000, 0]
    assert [list(b) for b in frame["block_ids"]] == [[], []]


def test_an_earlier_error_is_still_named_before_a_block_count(tmp_path):
    # a negative length is reported as before, not as a wrong number of blocks
    path = _trace(tmp_path, _line(0, -5, [1]))
    with pytest.raises(InvalidInstanceError, match="line 1: prompt_tokens is negative"):
        traces.read_mooncake(path)


# ---------------------------------------------------------------------------------------------
# The reader that parses every line then checks them all at once gives what the line-by-line
# reader gives (the frame, or the first bad line's message), and falls back to it on any doubt
# ---------------------------------------------------------------------------------------------
GOOD = [_line(0, 1000, [0, 1], 5), _line(1500, 600, [0, 2], 12), _line(500, 20, [3], 3)]
ODD_LINES = [
    "{not json", "[1, 2]", '"text"', "7", "null", '{"timestamp": 0, "input_length": 5}',
    '{"timestamp": 0, "input_length": 5, "hash_ids": [1]}', '{"input_length": 5, "output_length": 2}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": "abc"}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": null}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [1.0]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [[1]]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [true]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [9223372036854775808]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [-9223372036854775809]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [-9223372036854775808]}',
    '{"timestamp": 0, "input_length": 5, "output_length": 2}',
    '{"timestamp": true, "input_length": 5, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": NaN, "input_length": 5, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": "soon", "input_length": 5, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 1.5e3, "input_length": 5.0, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 2, "input_length": 1e400, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 2, "input_length": false, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]} {"timestamp": 3}',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]},',
    '   {"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]}  \t',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]}\x0c',
    '\ufeff{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9]}',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": [9], "hash_ids": [8]}',
    '{"timestamp": 2, "input_length": 5, "output_length": 2, "hash_ids": []}',
    "\x0c", "  ", '{"timestamp": 0, "input_length": 1' + "0" * 5000 + ', "output_length": 1}',
    "[" * 100000 + "]" * 100000,
]


def _outcome(path):
    """The frame read, or the message of the error raised."""
    try:
        return traces.read_mooncake(path)
    except InvalidInstanceError as exc:
        return str(exc)


def _same(tmp_path, monkeypatch, text: str | bytes, name="m.jsonl"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape"))
    got = _outcome(path)
    with monkeypatch.context() as patch:
        patch.setattr(traces, "_mooncake_at_once", lambda *a: None)  # the line-by-line reader only
        expected = _outcome(path)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert not isinstance(got, str), got
        pd.testing.assert_frame_equal(got, expected)
        assert [list(b) for b in got["block_ids"]] == [list(b) for b in expected["block_ids"]]
    return got


@pytest.mark.parametrize("odd", ODD_LINES, ids=[f"odd{i}" for i in range(len(ODD_LINES))])
@pytest.mark.parametrize("where", [0, 2, 3])
def test_an_odd_line_gives_what_the_line_by_line_reader_gives(tmp_path, monkeypatch, odd, where):
    lines = [json.dumps(g) for g in GOOD]
    lines.insert(where, odd)
    _same(tmp_path, monkeypatch, "\n".join(lines) + "\n")


def test_two_odd_lines_give_the_first_ones_message(tmp_path, monkeypatch):
    # the reader that checks everything at once must not report the later of two bad lines
    for first, second in [(ODD_LINES[5], ODD_LINES[0]), (ODD_LINES[6], ODD_LINES[15]),
                          (ODD_LINES[14], ODD_LINES[11])]:
        text = "\n".join([json.dumps(GOOD[0]), first, json.dumps(GOOD[1]), second]) + "\n"
        assert "line 2" in _same(tmp_path, monkeypatch, text)


@pytest.mark.parametrize("text", [
    "\n".join(json.dumps(g) for g in GOOD),  # no final line end
    "\r\n".join(json.dumps(g) for g in GOOD) + "\r\n",
    "\r".join(json.dumps(g) for g in GOOD) + "\r",
    "\n\n" + "\n\n".join(json.dumps(g) for g in GOOD) + "\n\n",
    "\ufeff" + "\n".join(json.dumps(g) for g in GOOD),
    "\n".join(json.dumps({k: v for k, v in g.items() if k != "hash_ids"}) for g in GOOD),
    "\n".join(json.dumps({**g, "user": "Jos\u00e9", "extra": [1, {"a": None}]}) for g in GOOD),
    "", "\n \n",
], ids=[f"layout{i}" for i in range(9)])
def test_layouts_give_what_the_line_by_line_reader_gives(tmp_path, monkeypatch, text):
    _same(tmp_path, monkeypatch, text)


def test_bad_bytes_and_gzip_give_what_the_line_by_line_reader_gives(tmp_path, monkeypatch):
    import gzip

    good = ("\n".join(json.dumps(g) for g in GOOD) + "\n").encode()
    latin = good.replace(b"[3]", b'[3], "user": "Jos\xe9"')
    assert "line 3 is not UTF-8" in _same(tmp_path, monkeypatch, latin)
    frame = _same(tmp_path, monkeypatch, gzip.compress(good), name="m.jsonl.gz")
    assert frame["prompt_tokens"].tolist() == [1000, 20, 600]
    assert "cannot be read" in _same(tmp_path, monkeypatch, gzip.compress(good)[:-12], name="t.jsonl.gz")
    assert "cannot be read" in _same(tmp_path, monkeypatch, gzip.compress(good)[:10] + b"\xff" * 30,
                                     name="d.jsonl.gz")


def test_a_long_trace_is_read_at_once_as_the_line_by_line_reader_reads_it(tmp_path, monkeypatch):
    # more lines than one chunk of the at-once reader, shuffled arrivals, a gap of blank lines
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 5000, 10_000)
    lines = [json.dumps(_line(int(t), int(n), rng.integers(-2**40, 2**40, -(-int(n) // 512)).tolist(),
                              int(o)))
             for t, n, o in zip(rng.integers(0, 10**6, 10_000), tokens, rng.integers(1, 99, 10_000),
                                strict=True)]
    lines[4096:4096] = ["", "  "]
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines[:4096]))  # exactly one chunk
    assert traces._mooncake_at_once(path, False) is not None
    path.write_text("\n".join(lines) + "\n")
    assert traces._mooncake_at_once(path, False) is not None  # (the fast reader is the one used)
    frame = _same(tmp_path, monkeypatch, path.read_text(), name="long2.jsonl")
    assert len(frame) == 10_000 and frame["arrival_s"].is_monotonic_increasing
    # one bad line deep in the file: the line-by-line reader names it
    lines[7000] = lines[7000].replace('"hash_ids": [', '"hash_ids": [true, ')
    assert "line 7001: hash_ids must be a list of 64-bit integers" in _same(
        tmp_path, monkeypatch, "\n".join(lines) + "\n")


def test_the_shared_trace_is_read_at_once_with_the_same_frame(tmp_path, monkeypatch):
    path = traces.shared_trace("mooncake_synthetic.jsonl")
    if path is None:
        pytest.skip("shared trace mooncake_synthetic.jsonl not present")
    assert traces._mooncake_at_once(path, False) is not None
    assert len(_same(tmp_path, monkeypatch, path.read_bytes())) == 3993


def test_the_collector_is_left_as_it_was(tmp_path):
    import gc

    good = _trace(tmp_path, *GOOD)
    bad = _trace(tmp_path, GOOD[0], "{oops", name="bad.jsonl")
    assert gc.isenabled()
    traces.read_mooncake(good)
    assert gc.isenabled()
    with pytest.raises(InvalidInstanceError):
        traces.read_mooncake(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        traces.read_mooncake(good)
        assert not gc.isenabled()
    finally:
        gc.enable()
