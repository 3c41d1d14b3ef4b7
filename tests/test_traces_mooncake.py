"""Mooncake JSONL: hash ids against input lengths."""

from __future__ import annotations

import json

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
