"""Mooncake JSONL: a key given twice in one line is refused, as in an instance JSON file.

``json.loads`` keeps the last of two values silently, so ``{"timestamp": 1, "timestamp": 5}``
had been read as an arrival at 5 ms; which value the writer meant cannot be known.
"""

from __future__ import annotations

import gzip
import json

import pytest

from servopt.core import InvalidInstanceError
from servopt.instances import caching, traces


def _good(t: int, tokens: int = 600, out: int = 2) -> str:
    blocks = -(-tokens // 512)  # by hand: ceil(tokens / 512) hash ids
    return json.dumps({"timestamp": t, "input_length": tokens, "output_length": out,
                       "hash_ids": list(range(t, t + blocks))})


def _write(tmp_path, lines: list[str], *, zipped: bool = False, name: str = "m.jsonl"):
    path = tmp_path / name
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


# each written by hand: the same key twice in the line's object, with two different values
TWICE = {
    "timestamp": '{"timestamp": 1, "input_length": 600, "output_length": 2, "hash_ids": [7, 8], '
                 '"timestamp": 5}',
    "input_length": '{"timestamp": 3, "input_length": 600, "input_length": 1100, '
                    '"output_length": 2, "hash_ids": [7, 8]}',
    "output_length": '{"timestamp": 3, "input_length": 600, "output_length": 2, '
                     '"output_length": 9, "hash_ids": [7, 8]}',
    "hash_ids": '{"timestamp": 3, "input_length": 600, "output_length": 2, "hash_ids": [7, 8], '
                '"hash_ids": [9, 10]}',
    # a field the reader does not use: still a mistake in the file
    "note": '{"timestamp": 3, "note": "a", "input_length": 600, "output_length": 2, '
            '"hash_ids": [7, 8], "note": "b"}',
}


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("key", sorted(TWICE))
def test_a_key_twice_in_one_line_is_refused_naming_file_line_and_key(tmp_path, key, zipped):
    # line 4 of the file (line 3 is blank): lines 1, 2 and 5 are good requests
    path = _write(tmp_path, [_good(0), _good(10), "", TWICE[key], _good(20)], zipped=zipped)
    with pytest.raises(InvalidInstanceError) as err:
        traces.read_mooncake(path)
    assert str(err.value) == (f"{path}: line 4: the key {key!r} appears twice in one JSON object "
                              "(which value is meant?)")


def test_a_key_twice_in_an_object_nested_in_a_line_is_refused(tmp_path):
    line = ('{"timestamp": 3, "input_length": 600, "output_length": 2, "hash_ids": [7, 8], '
            '"meta": {"region": "a", "region": "b"}}')
    path = _write(tmp_path, [_good(0), line])
    with pytest.raises(InvalidInstanceError, match=r": line 2: the key 'region' appears twice"):
        traces.read_mooncake(path)


def test_the_first_line_with_a_key_twice_is_named(tmp_path):
    path = _write(tmp_path, [_good(0)] * 3 + [TWICE["output_length"]] * 2 + [TWICE["timestamp"]])
    with pytest.raises(InvalidInstanceError, match=r": line 4: the key 'output_length' appears"):
        traces.read_mooncake(path)


def test_a_key_twice_deep_in_a_long_trace_is_found(tmp_path):
    # past the fast reader's first chunks (4096 lines each): line 25,000 of 30,000
    lines = [_good(k) for k in range(30_000)]
    lines[24_999] = TWICE["timestamp"]
    path = _write(tmp_path, lines)
    with pytest.raises(InvalidInstanceError, match=r": line 25000: the key 'timestamp' appears"):
        traces.read_mooncake(path)


def test_caching_from_trace_refuses_it_too(tmp_path):
    path = _write(tmp_path, [_good(0), TWICE["hash_ids"]])
    with pytest.raises(InvalidInstanceError, match=r": line 2: the key 'hash_ids' appears twice"):
        caching.from_trace(path)


def test_colons_inside_text_and_nested_objects_without_repeats_are_read(tmp_path):
    # the same keys in different objects, and ':' inside strings, are not a key given twice
    lines = [
        '{"timestamp": 0, "input_length": 600, "output_length": 2, "hash_ids": [1, 2], '
        '"note": "a:b:c", "meta": {"timestamp": 9, "note": "x"}}',
        '{"timestamp": 4, "input_length": 1100, "output_length": 3, "hash_ids": [3, 4, 5], '
        '"meta": {"timestamp": 9}, "other": {"meta": {"timestamp": 1}}}',
        '{"timestamp": 8, "input_length": 1, "output_length": 1, "hash_ids": [6], "k:": ":"}',
    ]
    frame = traces.read_mooncake(_write(tmp_path, lines))
    # by hand from the lines: ms -> s from the first request
    assert frame["arrival_s"].tolist() == [0.0, 0.004, 0.008]
    assert frame["prompt_tokens"].tolist() == [600, 1100, 1]
    assert frame["output_tokens"].tolist() == [2, 3, 1]
    assert [list(b) for b in frame["block_ids"]] == [[1, 2], [3, 4, 5], [6]]
