"""Bring-your-own-data readers: export quirks (trailing commas, duplicated columns, a byte-order
mark, gzip) read as the user meant or refused naming file, row, field and value. Expected values
are the hand-written samples below."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as bs
from servopt.instances import caching as ci
from servopt.instances import traces

# numeric timestamps, an extra named column, and a trailing comma on every data row
MY_LOG = "TIMESTAMP,ContextTokens,GeneratedTokens,latency_ms\r\n" + "".join(
    f"{t},{p},{o},{ms},\r\n" for t, p, o, ms in
    [(0.372, 3304, 220, 141), (0.432, 2294, 253, 514), (1.372, 98, 409, 9)])


def write(tmp_path, name, text, *, bom=False, gz=False):
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# ---------------------------------------------------------------------------------------------
# 1. trailing commas: read by the header's columns
# ---------------------------------------------------------------------------------------------
def test_trailing_comma_numeric_times_with_extra_column(tmp_path):
    frame = traces.read_azure(write(tmp_path, "log.csv", MY_LOG))
    # (was: columns shifted one place: prompt_tokens [220, 253, 409] from the GeneratedTokens column)
    assert frame["prompt_tokens"].tolist() == [3304, 2294, 98]
    assert frame["output_tokens"].tolist() == [220, 253, 409]
    assert frame["arrival_s"].tolist() == pytest.approx([0.0, 0.06, 1.0])


def test_trailing_comma_iso_times(tmp_path):
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,5,\n"
            "2023-11-16 18:00:01.5,11,6,\n")
    frame = traces.read_azure(write(tmp_path, "az.csv", text))  # (was: a TypeError traceback)
    assert frame.to_dict("list") == {"arrival_s": [0.0, 1.5], "prompt_tokens": [10, 11],
                                     "output_tokens": [5, 6]}


def test_trailing_comma_numeric_times_no_extra_column(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,100,5,\n1.0,200,6,\n2.5,300,7,\n"
    frame = traces.read_azure(write(tmp_path, "az.csv", text))  # (was: "output_tokens is not a number")
    assert frame.to_dict("list") == {"arrival_s": [0.0, 1.0, 2.5], "prompt_tokens": [100, 200, 300],
                                     "output_tokens": [5, 6, 7]}


def test_trailing_comma_on_some_rows_only_and_several_empty_fields(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n0,100,5\n1,200,6,\n2,300,7,,\n"
    frame = traces.read_azure(write(tmp_path, "az.csv", text))  # (was: "not a CSV file")
    assert frame["prompt_tokens"].tolist() == [100, 200, 300]
    assert frame["output_tokens"].tolist() == [5, 6, 7]


def test_burstgpt_trailing_comma(tmp_path):
    text = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "5,ChatGPT,472,18,490,Conversation log,\n45,ChatGPT,1087,0,1087,Conversation log,\n"
            "46,GPT-4,20,300,320,API log,\n")
    frame = traces.read_burstgpt(write(tmp_path, "bg.csv", text))  # (was: "arrival time is missing")
    assert frame.to_dict("list") == {"arrival_s": [0.0, 41.0], "prompt_tokens": [472, 20],
                                     "output_tokens": [18, 300]}
    assert traces.read_burstgpt(write(tmp_path, "bg2.csv", text), model="GPT-4")[
        "prompt_tokens"].tolist() == [20]


@pytest.mark.parametrize("rows, row, value", [
    ("0,100,5,9\n1,200,6,9\n", 1, "9"),  # a column without a name (was: read shifted)
    ("0,100,5,\n1,200,6,\n2,300,7,x\n", 3, "x"),  # a value in the otherwise empty trailing field
])
def test_values_beyond_the_header_refused(tmp_path, rows, row, value):
    path = write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows)
    with pytest.raises(InvalidInstanceError, match=rf"az.csv: data row {row}: data rows have 4 "
                       rf"fields, the header 3 \(the extra field holds '{value}'\)"):
        traces.read_azure(path)


# ---------------------------------------------------------------------------------------------
# 2. a column named twice
# ---------------------------------------------------------------------------------------------
def test_duplicated_column_refused(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens,ContextTokens\n0,10,5,99\n1,10,5,99\n"
    with pytest.raises(InvalidInstanceError, match=r"dup.csv: column 'ContextTokens' appears 2 "
                       r"times in the header \(columns 2, 4\): ambiguous"):
        traces.read_azure(write(tmp_path, "dup.csv", text))  # (was: the first copy used)
    text = "Timestamp, Request tokens, Response tokens, Request tokens\n5, 1, 2, 3\n"
    with pytest.raises(InvalidInstanceError, match="column 'Request tokens' appears 2 times"):
        traces.read_burstgpt(write(tmp_path, "dup_bg.csv", text))
    # a repeated column the reader does not use is harmless
    text = "TIMESTAMP,note,ContextTokens,GeneratedTokens,note\n0,a,10,5,b\n"
    assert traces.read_azure(write(tmp_path, "notes.csv", text))["prompt_tokens"].tolist() == [10]


# ---------------------------------------------------------------------------------------------
# 3. expert loads: true/false are not token counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("load", [[[True, 1], [1, 1]], [[0.5, 2.0], [1.0, False]]])
def test_expert_load_booleans_refused(tmp_path, load):
    path = write(tmp_path, "el.json", json.dumps(
        {"load_history": [{"logical_expert_load": [[1, 1], [1, 1]]}, {"logical_expert_load": load}]}))
    with pytest.raises(InvalidInstanceError, match=r"el\.json: step 1: .* got true/false values"):
        traces.read_expert_load(path)  # (was: true read as 1.0)


# ---------------------------------------------------------------------------------------------
# 4. gzip and byte-order mark, everywhere a text file is read
# ---------------------------------------------------------------------------------------------
def test_expert_load_gzip_and_bom(tmp_path):
    text = json.dumps({"load_history": [{"logical_expert_load": [[1, 2], [3, 4]]},
                                        {"logical_expert_load": [[5, 6], [7, 8]]}]})
    expected = [[[6.0, 8.0], [10.0, 12.0]]]  # the two steps summed by hand
    for name, options in (("a.json", {"bom": True}), ("b.json.gz", {"gz": True}),
                          ("c.json", {"gz": True, "bom": True})):
        loads = traces.read_expert_load(write(tmp_path, name, text, **options), window=2)
        assert loads.tolist() == expected


def caching_instance_json() -> dict:
    inst = ci.Instance(time=np.array([0.0, 1.0, 2.0]), object_id=np.array([0, 1, 0]),
                       size=np.array([1.0, 1.0]), miss_cost=np.array([1.0, 1.0]), capacity=1.0)
    return inst.to_dict()


def test_instance_json_gzip_and_bom(tmp_path):
    text = json.dumps(caching_instance_json())
    for name, options in (("a.json", {"bom": True}), ("b.json.gz", {"gz": True}),
                          ("c.json", {"gz": True, "bom": True})):
        inst = servopt.load(write(tmp_path, name, text, **options))  # (was: "Unexpected UTF-8 BOM")
        assert inst.object_id.tolist() == [0, 1, 0] and inst.capacity == 1.0
    assert servopt.load("\ufeff" + text).time.tolist() == [0.0, 1.0, 2.0]  # text with a mark
    assert ci.Instance.from_json(write(tmp_path, "d.json", text, bom=True)).capacity == 1.0


def test_damaged_gzip_instance_refused(tmp_path):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(json.dumps(caching_instance_json()).encode())[:30])
    with pytest.raises(InvalidInstanceError, match=r"bad\.json\.gz: cannot read"):
        servopt.load(path)


def test_csv_told_gzip_by_content_not_name(tmp_path):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n0,100,5\n2,200,6\n"
    for name in ("az.csv", "az.csv.gz"):
        frame = traces.read_azure(write(tmp_path, name, text, gz=True, bom=True))
        assert frame["prompt_tokens"].tolist() == [100, 200]


def test_saved_solution_with_bom_loads(tmp_path):
    inst = ci.generate(requests=40, objects=8, cache_share=0.25, seed=1)
    solution = servopt.solve(inst)
    solution.save(tmp_path / "sol")
    head = tmp_path / "sol" / "solution.json"
    head.write_bytes(b"\xef\xbb\xbf" + head.read_bytes())
    again = servopt.Solution.load(tmp_path / "sol")  # (was: "Unexpected UTF-8 BOM")
    assert again.status == solution.status and again.objective == pytest.approx(solution.objective)


# ---------------------------------------------------------------------------------------------
# 5. value-rule errors name the file
# ---------------------------------------------------------------------------------------------
def test_load_value_rule_error_names_the_file(tmp_path):
    data = caching_instance_json()
    data["fields"]["time"]["ndarray"] = [3.0, 1.2, 4.0]
    path = write(tmp_path, "unsorted.json", json.dumps(data))
    with pytest.raises(InvalidInstanceError, match=r"^\S*unsorted.json: time must be sorted"):
        servopt.load(path)
    data = caching_instance_json()
    data["fields"]["capacity"] = -1.0
    path = write(tmp_path, "negative.json", json.dumps(data))
    with pytest.raises(InvalidInstanceError, match=r"^\S*negative.json: capacity must be"):
        ci.Instance.from_json(path)


def test_load_infeasible_error_names_the_file(tmp_path):
    inst = bs.generate(n=5, seed=0)
    data = inst.to_dict()
    data["fields"]["kv_memory"] = 1  # no request fits: infeasible, not malformed
    path = write(tmp_path, "tight.json", json.dumps(data))
    with pytest.raises(servopt.InfeasibleError, match=r"^\S*tight.json: "):
        servopt.load(path)


# ---------------------------------------------------------------------------------------------
# 6. a cache share too small for the trace
# ---------------------------------------------------------------------------------------------
MOONCAKE = "\n".join(json.dumps(r) for r in [  # 5 distinct blocks
    {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]},
    {"timestamp": 500, "input_length": 600, "output_length": 12, "hash_ids": [0, 2]},
    {"timestamp": 900, "input_length": 20, "output_length": 3, "hash_ids": [3]},
    {"timestamp": 1500, "input_length": 20, "output_length": 3, "hash_ids": [4]},
]) + "\n"


def test_cache_share_rounding_to_no_block_refused(tmp_path):
    path = write(tmp_path, "mc.jsonl", MOONCAKE)
    with pytest.raises(InvalidInstanceError, match=r"mc.jsonl: cache_share 0.05 of this trace's 5 "
                       r"distinct blocks is 0.25 blocks.*too small.*1/5 = 0.2"):
        ci.from_trace(path, cache_share=0.05)  # (was: a 0-token cache)
    assert ci.from_trace(path, cache_share=0.2).capacity == 512.0  # 1 of 5 blocks, x 512 tokens
    assert ci.from_trace(path, cache_share=0.0).capacity == 0.0  # asked for explicitly


# ---------------------------------------------------------------------------------------------
# 7. batch scheduling takes a request frame, as decode routing does
# ---------------------------------------------------------------------------------------------
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"{k},{320 + 32 * k},{3 + k}\n" for k in range(8))


def test_batch_from_trace_takes_a_frame(tmp_path):
    path = write(tmp_path, "az.csv", AZURE)
    frame = pd.DataFrame({"arrival_s": [float(k) for k in range(8)],
                          "prompt_tokens": [320 + 32 * k for k in range(8)],
                          "output_tokens": [3 + k for k in range(8)]})
    from_path = bs.from_trace(path, n=6, start=1, round_s=0.25, rate_scale=2.0)
    from_frame = bs.from_trace(frame, n=6, start=1, round_s=0.25, rate_scale=2.0)  # (was: TypeError)
    # by hand: arrivals 1 s apart at twice the rate are 0.5 s = two 0.25 s rounds apart; prompts / 32
    assert from_frame.arrival.tolist() == [0, 2, 4, 6, 8, 10]
    assert from_frame.prompt_tokens.tolist() == [11, 12, 13, 14, 15, 16]
    assert from_frame.output_tokens.tolist() == [4, 5, 6, 7, 8, 9]
    for field in ("arrival", "prompt_tokens", "output_tokens", "predicted_output"):
        assert getattr(from_frame, field).tolist() == getattr(from_path, field).tolist()
    assert from_frame.kv_memory == from_path.kv_memory and from_frame.name == "trace frame"


@pytest.mark.parametrize("given, message", [
    (5, "expected a pandas DataFrame of requests or a trace path, got int"),
    (pd.DataFrame({"arrival_s": [1.0, 0.0], "prompt_tokens": [1, 2], "output_tokens": [1, 1]}),
     "arrival_s must be sorted: row 1 arrives at 0 s, before row 0 at 1 s"),
    (pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [1, -2], "output_tokens": [1, 1]}),
     r"row 1: prompt_tokens is negative \(-2\)"),
    (pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_tokens": [1, 2]}),
     r"missing column\(s\) \['output_tokens'\]"),
])
def test_batch_from_trace_bad_frame_refused(given, message):
    with pytest.raises(InvalidInstanceError, match=f"trace frame: {message}"):
        bs.from_trace(given, n=1)
