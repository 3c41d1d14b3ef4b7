"""Trace loaders: small inline samples of each format, bad input, and the shared traces."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from servopt.core import InvalidInstanceError
from servopt.instances import traces

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:06.5319600,110,27
2023-11-16 18:17:05.0319600,7,1
"""

MOONCAKE = "\n".join(json.dumps(r) for r in [
    {"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]},
    {"timestamp": 1500, "input_length": 600, "output_length": 12, "hash_ids": [0, 2]},
    {"timestamp": 500, "input_length": 20, "output_length": 3, "hash_ids": [3]},
]) + "\n\n"

BURST = """Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type
5, ChatGPT, 472, 18, 490, Conversation log
45, GPT-4, 1087, 0, 1087, Conversation log
46, ChatGPT, 20, 300, 320, API log
100, GPT-4, 31, 44, 75, Conversation log
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# Azure
# ---------------------------------------------------------------------------------------------
def test_azure_sample_sorted_and_zeroed(tmp_path):
    frame = traces.read_azure(write(tmp_path, "a.csv", AZURE))
    assert list(frame.columns) == traces.REQUEST_COLUMNS
    # 7 fractional digits parsed; out-of-order row sorted into place
    assert frame["arrival_s"].tolist() == pytest.approx([0.0, 0.052, 1.052, 2.552])
    assert frame["prompt_tokens"].tolist() == [4808, 3180, 7, 110]
    assert frame["output_tokens"].tolist() == [10, 8, 1, 27]
    assert frame["prompt_tokens"].dtype == np.int64


def test_azure_rate_scale_and_window(tmp_path):
    path = write(tmp_path, "a.csv", AZURE)
    fast = traces.read_azure(path, rate_scale=2.0)
    assert fast["arrival_s"].tolist() == pytest.approx([0.0, 0.026, 0.526, 1.276])
    window = traces.read_azure(path, start_s=0.05, end_s=2.0)
    # rows at 0.052 and 1.052 s kept, re-zeroed at the first kept request
    assert window["prompt_tokens"].tolist() == [3180, 7]
    assert window["arrival_s"].tolist() == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("text, message", [
    ("TIMESTAMP,Context\n2023-11-16 18:17:03,5\n", "missing column"),
    (AZURE.replace("4808", "-4"), "negative"),
    (AZURE.replace("4808", "lots"), "not a number"),
    (AZURE.replace("2023-11-16 18:17:04.0319600", "yesterday"), "not a date-time"),
])
def test_azure_bad_input(tmp_path, text, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_azure(write(tmp_path, "bad.csv", text))


def test_missing_file_empty_window_bad_rate(tmp_path):
    with pytest.raises(InvalidInstanceError, match="no such trace file"):
        traces.read_azure(tmp_path / "absent.csv")
    path = write(tmp_path, "a.csv", AZURE)
    with pytest.raises(InvalidInstanceError, match="no request in the time window"):
        traces.read_azure(path, start_s=100.0)
    for rate in (0.0, -1.0, math.nan):
        with pytest.raises(InvalidInstanceError, match="rate_scale"):
            traces.read_azure(path, rate_scale=rate)
    with pytest.raises(InvalidInstanceError, match=r"not a CSV|no request"):
        traces.read_azure(write(tmp_path, "empty.csv", ""))
    header = write(tmp_path, "header.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(InvalidInstanceError, match=r"no request in the trace \(a header only\?\)"):
        traces.read_azure(header)


def test_a_json_file_or_a_wide_header_gives_a_short_message(tmp_path):
    # a JSON object is one CSV header of thousands of columns to pandas: refused before parsing
    blob = json.dumps({f"key{i}": list(range(20)) for i in range(3000)})
    for name in ("x.json", "x.csv"):
        with pytest.raises(InvalidInstanceError, match="a JSON file, not a CSV trace"):
            traces.read_burstgpt(write(tmp_path, name, "  " + blob))
    # a real CSV with the wrong columns names the first 8 of them and counts the rest
    wide = write(tmp_path, "wide.csv", ",".join(f"c{i}" for i in range(500)) + "\n" + ",".join("1" * 500))
    with pytest.raises(InvalidInstanceError) as err:
        traces.read_azure(wide)
    message = str(err.value)
    assert "not an Azure LLM inference trace" in message and "and 492 more" in message
    assert len(message) < 400


# ---------------------------------------------------------------------------------------------
# Mooncake
# ---------------------------------------------------------------------------------------------
def test_mooncake_sample(tmp_path):
    frame = traces.read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE))
    assert frame["arrival_s"].tolist() == pytest.approx([0.0, 0.5, 1.5])  # ms -> s, sorted
    assert frame["prompt_tokens"].tolist() == [1000, 20, 600]
    assert frame["output_tokens"].tolist() == [5, 3, 12]
    assert [list(b) for b in frame["block_ids"]] == [[0, 1], [3], [0, 2]]
    slow = traces.read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE), rate_scale=0.5)
    assert slow["arrival_s"].tolist() == pytest.approx([0.0, 1.0, 3.0])
    # the window is [start_s, end_s): a request exactly at end_s is out, one at start_s is in
    path = write(tmp_path, "m.jsonl", MOONCAKE)
    assert traces.read_mooncake(path, end_s=1.5)["prompt_tokens"].tolist() == [1000, 20]
    assert traces.read_mooncake(path, start_s=0.5)["prompt_tokens"].tolist() == [20, 600]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"timestamp": 0, "input_length": 5}', "missing"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": "abc"}',
     "hash_ids must be a list"),
    ('{"timestamp": 0, "input_length": -5, "output_length": 2, "hash_ids": [9]}', "line 5: .*negative"),
    ('{"timestamp": "soon", "input_length": 5, "output_length": 2, "hash_ids": [9]}',
     "line 5: the arrival time"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 2}', "line 5 has no hash_ids"),
])
def test_mooncake_bad_lines(tmp_path, line, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_mooncake(write(tmp_path, "bad.jsonl", MOONCAKE + line + "\n"))


def test_mooncake_empty(tmp_path):
    with pytest.raises(InvalidInstanceError, match="no request"):
        traces.read_mooncake(write(tmp_path, "e.jsonl", "\n\n"))


# ---------------------------------------------------------------------------------------------
# BurstGPT
# ---------------------------------------------------------------------------------------------
def test_burstgpt_sample_drops_failed_and_filters_model(tmp_path):
    path = write(tmp_path, "b.csv", BURST)
    frame = traces.read_burstgpt(path)
    # the GPT-4 row with 0 response tokens is a failed request and is dropped
    assert frame["prompt_tokens"].tolist() == [472, 20, 31]
    assert frame["arrival_s"].tolist() == pytest.approx([0.0, 41.0, 95.0])
    kept = traces.read_burstgpt(path, drop_failed=False)
    assert len(kept) == 4 and kept["output_tokens"].tolist()[1] == 0
    gpt4 = traces.read_burstgpt(path, model="GPT-4")
    assert gpt4["prompt_tokens"].tolist() == [31]
    with pytest.raises(InvalidInstanceError, match="no request with model 'Llama'"):
        traces.read_burstgpt(path, model="Llama")
    window = traces.read_burstgpt(path, rate_scale=10.0, end_s=50)
    assert window["arrival_s"].tolist() == pytest.approx([0.0, 4.1])


@pytest.mark.parametrize("text, message", [
    ("Timestamp, Model, Request tokens\n1, x, 4\n", "missing column"),
    (BURST.replace("472", "-472"), "negative"),
    (BURST.replace("\n5,", "\nfive,"), "data row 1: the arrival time"),
])
def test_burstgpt_bad_input(tmp_path, text, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_burstgpt(write(tmp_path, "bad.csv", text))


# ---------------------------------------------------------------------------------------------
# Shared public traces (skipped when ../shared/traces is absent)
# ---------------------------------------------------------------------------------------------
def test_shared_azure_code_trace_matches_published_facts():
    path = traces.shared_trace("azure2023_code.csv")
    if path is None:
        pytest.skip("shared trace azure2023_code.csv not present")
    frame = traces.read_azure(path)
    assert len(frame) == 8819
    assert frame["prompt_tokens"].mean() == pytest.approx(2048, abs=1)
    assert frame["prompt_tokens"].median() == pytest.approx(1469, abs=1)
    assert frame["prompt_tokens"].max() == 7437
    assert frame["output_tokens"].mean() == pytest.approx(28, abs=0.5)
    assert frame["output_tokens"].median() == 13
    assert frame["output_tokens"].max() == 1899
    rate = (len(frame) - 1) / frame["arrival_s"].iloc[-1]
    assert rate == pytest.approx(2.57, abs=0.01)
    assert frame["arrival_s"].is_monotonic_increasing and frame["arrival_s"].iloc[0] == 0.0


def test_shared_mooncake_trace_matches_published_facts():
    path = traces.shared_trace("mooncake_synthetic.jsonl")
    if path is None:
        pytest.skip("shared trace mooncake_synthetic.jsonl not present")
    frame = traces.read_mooncake(path)
    assert len(frame) == 3993
    blocks = np.array([len(b) for b in frame["block_ids"]])
    assert np.all(blocks == np.ceil(frame["prompt_tokens"].to_numpy() / 512))
    assert frame["prompt_tokens"].mean() == pytest.approx(15325, abs=1)
    assert frame["output_tokens"].mean() == pytest.approx(149, abs=1)


def test_shared_azure_trace_builds_a_decode_routing_instance():
    path = traces.shared_trace("azure2023_code.csv")
    if path is None:
        pytest.skip("shared trace azure2023_code.csv not present")
    from servopt.instances import decode_routing

    frame = traces.read_azure(path, end_s=120)
    inst = decode_routing.from_trace(frame, workers=4, load=0.85)
    assert inst.n_requests == len(frame)
    assert inst.requests["output_tokens"].min() >= 1
    assert isinstance(inst.requests, pd.DataFrame)


def test_fractional_tokens_are_refused_not_truncated(tmp_path):
    """A token count like 12.5 is corrupt data; it used to be truncated silently to 12."""
    with pytest.raises(InvalidInstanceError, match="whole number"):
        traces.read_azure(write(tmp_path, "f.csv", AZURE.replace(",4808,", ",4808.5,")))


def test_burstgpt_error_names_the_file_row_after_dropped_rows(tmp_path):
    """Row numbers count data rows of the file (1-based), even after failed requests are dropped."""
    text = BURST.replace("100, GPT-4, 31", "100, GPT-4, -31")
    with pytest.raises(InvalidInstanceError, match="data row 4: prompt_tokens is negative"):
        traces.read_burstgpt(write(tmp_path, "b.csv", text))


# ---------------------------------------------------------------------------------------------
# Expert-load JSON
# ---------------------------------------------------------------------------------------------
def _steps(*loads):
    return json.dumps({"load_history": [{"logical_expert_load": x} for x in loads]})


def test_expert_load_windows(tmp_path):
    path = write(tmp_path, "load.json", _steps([[1, 2]], [[3, 4]], [[5, 6]]))
    np.testing.assert_array_equal(traces.read_expert_load(path, window=2), [[[4, 6]]])  # 3rd dropped
    # fewer steps than one window: all steps form one window
    np.testing.assert_array_equal(traces.read_expert_load(path, window=5), [[[9, 12]]])


@pytest.mark.parametrize("text, message", [
    (json.dumps({"load_history": []}), "non-empty 'load_history'"),
    (_steps([1, 2]), "layers x experts"),
    (_steps([[1, 2]], [[1, 2, 3]]), "disagree"),
    (_steps([[1, -2]]), "finite and >= 0"),
    ('{"load_history": [{"logical_expert_load": [[1, NaN]]}]}', "finite and >= 0"),
    ("{oops", "not valid JSON"),
])
def test_expert_load_bad_input(tmp_path, text, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_expert_load(write(tmp_path, "load.json", text))
    with pytest.raises(InvalidInstanceError, match="window must be a positive"):
        traces.read_expert_load(write(tmp_path, "ok.json", _steps([[1, 2]])), window=0)


# ---------------------------------------------------------------------------------------------
# Input a user's own files may hold
# ---------------------------------------------------------------------------------------------
def test_azure_numeric_timestamps_are_seconds(tmp_path):
    # epoch seconds (pandas would read bare integers as nanoseconds since 1970)
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n1700000002,5,1\n1700000000,7,2\n1700000000.5,9,3\n"
    frame = traces.read_azure(write(tmp_path, "a.csv", text))
    assert frame["arrival_s"].tolist() == pytest.approx([0.0, 0.5, 2.0])
    assert frame["prompt_tokens"].tolist() == [7, 9, 5]


@pytest.mark.parametrize("text, message", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1e30,1\n", "more than"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03+00:00,5,1\n"
     "2023-11-16 18:17:04,5,1\n", "data row 2: TIMESTAMP .* has no UTC offset"),
    # one format for the column: 12/11 read month first, then 13/11 cannot be (per-row guessing
    # had read it day first: the rows were re-sorted over 29 days)
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n12/11/2023 23:59:58,5,1\n12/11/2023 23:59:59,5,1\n"
     "13/11/2023 00:00:00,5,1\n", "data row 3: TIMESTAMP '13/11/2023 00:00:00' is not a date-time"),
    # a time without a date among date-times (it had been read as today's date)
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,5,1\n18:17:04,5,1\n",
     "data row 2: TIMESTAMP '18:17:04'"),
    # milliseconds are not seconds (the rate came out 1000x too low)
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1700158623000,5,1\n1700158623500,5,1\n",
     "is not seconds"),
    # more digits than a float holds: refused, not an OverflowError traceback
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03," + "1" + "0" * 400 + ",1\n",
     "data row 1: prompt_tokens is inf, more than"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,true,1\n", "true/false"),
])
def test_azure_values_that_would_be_misread(tmp_path, text, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_azure(write(tmp_path, "a.csv", text))


@pytest.mark.parametrize("kw", [{"rate_scale": "2"}, {"rate_scale": True}, {"start_s": "1"},
                                {"end_s": float("nan")}])
def test_window_options_must_be_numbers(tmp_path, kw):
    with pytest.raises(InvalidInstanceError, match=next(iter(kw))):
        traces.read_azure(write(tmp_path, "a.csv", AZURE), **kw)


def test_byte_order_marks_are_read(tmp_path):
    bom = "\ufeff"
    assert len(traces.read_azure(write(tmp_path, "a.csv", bom + AZURE))) == 4
    assert len(traces.read_mooncake(write(tmp_path, "m.jsonl", bom + MOONCAKE))) == 3
    assert len(traces.read_burstgpt(write(tmp_path, "b.csv", bom + BURST))) == 3
    loads = {"load_history": [{"logical_expert_load": [[1, 2]]}]}
    assert traces.read_expert_load(write(tmp_path, "e.json", bom + json.dumps(loads))).shape == (1, 1, 2)


@pytest.mark.parametrize("line, message", [
    ('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [18446744073709551616]}',
     "64-bit"),
    ('{"timestamp": 0, "input_length": 5, "output_length": 2, "hash_ids": [true]}', "64-bit"),
    ('{"timestamp": 0, "input_length": true, "output_length": 2, "hash_ids": [9]}', "true/false"),
    ('{"timestamp": true, "input_length": 5, "output_length": 2, "hash_ids": [9]}', "timestamp"),
])
def test_mooncake_values_that_would_be_misread(tmp_path, line, message):
    with pytest.raises(InvalidInstanceError, match=message):
        traces.read_mooncake(write(tmp_path, "bad.jsonl", MOONCAKE + line + "\n"))


def test_azure_utc_offsets_are_honoured(tmp_path):
    # a local-time log crossing the end of daylight saving: two instants 2 s apart
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-05T01:59:59-04:00,5,1\n"
            "2023-11-05T01:00:01-05:00,7,1\n")
    assert traces.read_azure(write(tmp_path, "a.csv", text))["arrival_s"].tolist() == [0.0, 2.0]


def test_burstgpt_window_is_measured_from_the_first_request_of_the_trace(tmp_path):
    # the failed request at t = 0 is dropped, but the window [100, 200) still starts 100 s after it
    text = ("Timestamp, Model, Request tokens, Response tokens, Total tokens, Log Type\n"
            "0, ChatGPT, 100, 0, 100, Conversation log\n150, ChatGPT, 200, 20, 220, Conversation log\n"
            "250, ChatGPT, 300, 30, 330, Conversation log\n")
    path = write(tmp_path, "b.csv", text)
    assert traces.read_burstgpt(path, start_s=100, end_s=200)["prompt_tokens"].tolist() == [200]
    # the same window for one model: GPT-4's rows are read on the trace's clock, not their own
    gpt4 = write(tmp_path, "g.csv", text.replace("150, ChatGPT", "150, GPT-4"))
    assert traces.read_burstgpt(gpt4, model="GPT-4", start_s=100, end_s=200)["prompt_tokens"].tolist() \
        == [200]
    with pytest.raises(InvalidInstanceError, match="is not seconds"):
        traces.read_burstgpt(write(tmp_path, "ms.csv", text.replace("\n150,", "\n150000000000000,")))


def test_mooncake_gzip_and_bad_bytes(tmp_path):
    import gzip

    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(MOONCAKE.encode()))
    plain = traces.read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE))
    pd.testing.assert_frame_equal(traces.read_mooncake(packed), plain)
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(MOONCAKE.encode() + b'{"timestamp": 9, "input_length": 5, "output_length": 1, '
                    b'"hash_ids": [1], "user": "Jos\xe9"}\n')
    with pytest.raises(InvalidInstanceError, match="line 5 is not UTF-8"):
        traces.read_mooncake(bad)
    huge = '{"timestamp": 0, "input_length": 1' + "0" * 400 + ', "output_length": 1, "hash_ids": [1]}'
    with pytest.raises(InvalidInstanceError, match="line 5: prompt_tokens is inf, more than"):
        traces.read_mooncake(write(tmp_path, "h.jsonl", MOONCAKE + huge + "\n"))


@pytest.mark.parametrize("stamps, seconds", [
    # ISO 8601 rows differ in their fraction: str(datetime) drops a zero microsecond
    (["2024-05-10 00:00:00.009930+00:00", "2024-05-10 00:00:01+00:00",
      "2024-05-10 00:00:01.500000+00:00"], [0.0, 0.99007, 1.49007]),
    (["2023-11-16 18:17:03", "2023-11-16 18:17:04.0319600"], [0.0, 1.03196]),
    (["2023-11-16T18:17:03Z", "2023-11-16T18:17:04.25Z"], [0.0, 1.25]),
    (["2023-11-16 00:00:00", "2023-11-17"], [0.0, 86400.0]),
])
def test_azure_iso_rows_may_differ_in_their_fraction(tmp_path, stamps, seconds):
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{s},5,1\n" for s in stamps)
    assert traces.read_azure(write(tmp_path, "a.csv", text))["arrival_s"].tolist() == pytest.approx(seconds)


def test_more_damaged_files_get_one_line_errors(tmp_path):
    import gzip

    with pytest.raises(InvalidInstanceError, match="data row 1: TIMESTAMP is empty"):
        traces.read_azure(write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n,5,1\n"
                                "2023-11-16 18:17:03,5,1\n"))
    packed = gzip.compress(MOONCAKE.encode())[:10] + b"\xff" * 30  # a damaged deflate stream
    (tmp_path / "bad.jsonl.gz").write_bytes(packed)
    with pytest.raises(InvalidInstanceError, match="cannot be read"):
        traces.read_mooncake(tmp_path / "bad.jsonl.gz")
    with pytest.raises(InvalidInstanceError, match="line 2 has hash_ids while the lines before it do not"):
        traces.read_mooncake(write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 5, '
                                   '"output_length": 1}\n{"timestamp": 1, "input_length": 5, '
                                   '"output_length": 1, "hash_ids": [1]}\n'))
    digits = '{"timestamp": 0, "input_length": 1' + "0" * 5000 + ', "output_length": 1}\n'
    with pytest.raises(InvalidInstanceError, match="line 1 is not JSON"):
        traces.read_mooncake(write(tmp_path, "d.jsonl", digits))
    burst = BURST.replace("472, 18,", "472, 1" + "0" * 400 + ",")
    with pytest.raises(InvalidInstanceError, match="data row 1: output_tokens is inf, more than"):
        traces.read_burstgpt(write(tmp_path, "b.csv", burst))


def test_mooncake_reads_any_line_end(tmp_path):
    plain = traces.read_mooncake(write(tmp_path, "m.jsonl", MOONCAKE))
    for end in ("\r\n", "\r"):
        path = tmp_path / "ends.jsonl"
        path.write_bytes(MOONCAKE.replace("\n", end).encode())
        pd.testing.assert_frame_equal(traces.read_mooncake(path), plain)


def test_a_request_frame_where_a_file_is_read_is_refused_by_name():
    # capacity's and caching's from_trace read the file themselves (a TypeError from Path())
    from servopt.instances import caching, capacity
    frame = pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [10], "output_tokens": [5]})
    with pytest.raises(InvalidInstanceError, match=r"trace file path .* got DataFrame"):
        capacity.from_trace(frame, kv_tokens=200_000)
    with pytest.raises(InvalidInstanceError, match=r"trace file path .* got DataFrame"):
        caching.from_trace(frame)
    with pytest.raises(InvalidInstanceError, match="got int"):
        traces.read_azure(3)


def test_any_os_pathlike_is_a_trace_path(tmp_path):
    import os

    path = tmp_path / "a.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,20,6\n")
    entry = next(e for e in os.scandir(tmp_path) if e.name == "a.csv")  # an os.DirEntry
    assert traces.read_azure(entry)["prompt_tokens"].tolist() == [10, 20]
