"""The CLI's one-line error shows the whole message: a file name holding a newline printed only
the text before it (then ' ...'), hiding the reason."""

from __future__ import annotations

from servopt import cli


def test_a_newline_in_a_file_name_is_escaped_not_cut(tmp_path, capsys):
    path = tmp_path / "bad\nname.json"
    path.write_text('{"decision": "batch_scheduling"')  # not valid JSON
    assert cli.main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    shown = str(path).replace("\n", "\\n")
    assert err == f"servopt: error: {shown}: not valid JSON (Expecting ',' delimiter: line 1 " \
                  "column 32 (char 31))\n"
