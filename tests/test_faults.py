"""Faults and bad input, second round (issue 31): torn append-only files, wrong options and law
files, a teacher server that misbehaves, outputs that cannot be written, plans that cannot run.
Each case goes through the CLI's main() in this process (the console script's code path, minus
the interpreter start) or the Python API, and asserts the exit code, a one-line message naming
the problem and where, and that nothing on disk changed. Interrupts, --help and start-up noise
need real processes: they are at the end."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.appended import CorruptLine, append_jsonl, read_jsonl
from helpers import EPOCH, make_law
from scaling.cli import main
from scaling.configuration import ConfigError
from tests.test_bad_input import snapshot
from tests.test_data_teacher import _gin, _write_corpus, openai_server  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parent.parent


def cli(*argv) -> tuple[int, str, str]:
    """`scaling <argv>` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_line(stderr: str) -> str:
    """The message, asserted to be one line with no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- 1. append-only files: a torn last line is a write that never finished -----------------------


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_clean(tmp_path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"step": 1}, {"step": 2}])
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a kill during the append
    assert [r for _, r in read_jsonl(path)] == [{"step": 1}, {"step": 2}]
    append_jsonl(path, {"step": 3})
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 3}\n'
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')  # damage in the middle is not skipped
    with pytest.raises(CorruptLine, match=f"{path}:2: not a JSON line"):
        list(read_jsonl(path))


def test_resume_collect_and_the_cache_skip_a_torn_last_line_and_name_a_corrupt_one(tmp_path):
    from scaling.data import cache as cache_lib
    from scaling.run_folder import RunFolder
    from scaling.sweep.collect import read_rows
    from analysis.schema import TRAINING

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = RunFolder(run_dir, 100)
    rows = [{"step": s, "branch": "", "is_final": False} for s in (1, 2, 3)]
    for row in rows:
        folder.append("log.jsonl", row)
        folder.append("training_rows.jsonl", row)
    for name in ("log.jsonl", "training_rows.jsonl"):
        with open(run_dir / name, "a") as f:
            f.write('{"step": 4, "bra')
    folder.keep_rows(lambda r: r["step"] <= 2)  # what a resume does: the torn line goes with the replayed rows
    for name in ("log.jsonl", "training_rows.jsonl"):
        assert [r for _, r in read_jsonl(run_dir / name)] == rows[:2]
    (run_dir / "log.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    before = snapshot(run_dir)
    with pytest.raises(ConfigError, match=f"{run_dir / 'log.jsonl'}:2: not a JSON line"):
        folder.keep_rows(lambda r: True)
    assert snapshot(run_dir) == before

    # the collector reads the same way (a schema error names the line of the row it is in)
    table = run_dir / "training_rows.jsonl"
    with open(table, "a") as f:
        f.write('{"run_id": "r", "ste')
    with pytest.raises(ConfigError, match=f"{table}:1: missing required column"):
        read_rows(table, TRAINING)  # the first real row lacks columns; the torn one is never looked at
    table.write_text('{"a": 1}\n{"a": \n{"a": 2}\n')
    with pytest.raises(ConfigError, match=f"{table}:2: not a JSON line"):
        read_rows(table, TRAINING)

    # the teacher cache: a line without a key is not a cache record
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "shard-x.jsonl").write_text('{"key": "a", "text": "t"}\n{"text": "no key"}\n')
    with pytest.raises(ConfigError, match="shard-x.jsonl:2: a cache record without its 'key'"):
        list(cache_lib.read_records(cache_dir))


# -- 3 and 7. fit, predict, recommend, report, describe: options and law files ---------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small table (16 points of a known law), a law file, and malformed law files."""
    folder = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    n = np.repeat([1e7, 3e7, 1e8, 3e8], 4)
    d = np.tile([1e9, 3e9, 1e10, 3e10], 4)
    loss = (1.7 + 400 / n ** 0.34 + 410 / d ** 0.28) * (1 + 0.01 * rng.standard_normal(16))
    table = pd.DataFrame({"params": n, "tokens": d, "eval_loss": loss})
    table.to_csv(folder / "table.csv", index=False)
    law = make_law().save(folder / "law.json")
    good = json.loads(law.read_text())
    bad = {"truncated.json": law.read_text()[:60],
           "n_points.json": json.dumps({**good, "n_points": "abc"}),
           "estimate.json": json.dumps({**good, "parameters": {**good["parameters"], "alpha": {"estimate": "x"}}}),
           "parameters.json": json.dumps({**good, "parameters": [1, 2]}),
           "out_of_bounds.json": make_law({**EPOCH, "alpha": -0.2}).save(folder / "oob.json").read_text()}
    for name, text in bad.items():
        (folder / name).write_text(text)
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00\x01 not text")
    return folder


@pytest.mark.parametrize("argv, code, message", [
    (["--huber-delta=0"], 2, "argument --huber-delta: 0: must be a finite number above zero"),
    (["--huber-delta=-1"], 2, "argument --huber-delta: -1: must be a finite number above zero"),
    (["--bootstrap=-5"], 2, "argument --bootstrap: -5: must be an integer >= 0"),
    (["--heldout-fraction=-0.5"], 2, "argument --heldout-fraction: -0.5: must be a share in [0, 1)"),
    (["--heldout-fraction=1"], 2, "argument --heldout-fraction: 1: must be a share in [0, 1)"),
    (["--columns", "Q=foo"], 2, "--columns: 'Q' (in 'Q=foo') is not a name any law reads"),
    (["--columns", "N=params,N=tokens"], 2, "--columns: 'N' is mapped twice"),
    (["--gin.train.seed=1"], 2, "fit takes no gin flags, and would ignore (gin binding train.seed = 1)"),
    (["--gin_file=gin/runs/pretrain.gin"], 2, "fit takes no gin flags, and would ignore --gin_file="),
])
def test_fit_refuses_bad_options_before_fitting(files, tmp_path, argv, code, message):
    before = snapshot(files)
    got, out, err = cli("fit", files / "table.csv", "-o", tmp_path / "law.json", "--bootstrap=0", *argv)
    assert got == code and message in one_line(err)
    assert not (tmp_path / "law.json").exists() and snapshot(files) == before


def test_fit_reads_is_final_text_and_refuses_repeated_rows(files, tmp_path):
    table = pd.read_csv(files / "table.csv")
    junk = table.assign(eval_loss=table["eval_loss"] * 3)  # logged, not final: a fit that used them would be off
    mixed = pd.concat([table.assign(is_final="T"), junk.assign(is_final="F")], ignore_index=True)
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    code, out, err = cli("fit", tmp_path / "mixed.csv", "-o", tmp_path / "law.json", "--bootstrap=0",
                         "--heldout-fraction=0")
    assert code in (0, 1), err
    law = json.loads((tmp_path / "law.json").read_text())
    assert law["n_points"] == len(table)  # the "F" rows were left out

    mixed.assign(is_final=["maybe"] + ["T"] * (len(mixed) - 1)).to_csv(tmp_path / "bad_final.csv", index=False)
    code, _, err = cli("fit", tmp_path / "bad_final.csv", "-o", tmp_path / "other.json")
    assert code == 2 and "column 'is_final' must be true/false (or 1/0) in every row" in one_line(err)
    assert "first 'maybe' at line 2" in err

    pd.concat([table] * 5, ignore_index=True).to_csv(tmp_path / "five.csv", index=False)
    code, _, err = cli("fit", tmp_path / "five.csv", "-o", tmp_path / "other.json")
    assert code == 2 and f"{tmp_path / 'five.csv'}: 64 row(s) repeat another row in every column" in one_line(err)
    assert "(first line 18, a copy of line 2)" in err
    zero = table.copy()
    zero.loc[3, "eval_loss"] = 0
    zero.to_csv(tmp_path / "zero.csv", index=False)
    code, _, err = cli("fit", tmp_path / "zero.csv", "-o", tmp_path / "other.json")
    assert code == 2 and "column 'eval_loss' (loss) has 1 non-positive value(s) (e.g. 0 at line 5)" in one_line(err)
    assert not (tmp_path / "other.json").exists()


@pytest.mark.parametrize("name, field", [
    ("truncated.json", "not valid JSON"),
    ("n_points.json", "field 'n_points' must be an integer, got 'abc'"),
    ("estimate.json", "parameter 'alpha' must be {'estimate', 'se', 'ci': [low, high]}"),
    ("parameters.json", "field 'parameters' must be a JSON object"),
    ("binary.json", "not a law file (not UTF-8 text"),
    ("out_of_bounds.json", "parameter alpha = -0.2 is outside the chinchilla form's bounds"),
])
@pytest.mark.parametrize("verb, query", [("predict", ["--N=1e9", "--D=2e10"]), ("recommend", ["--train_flops=1e21"])])
def test_a_malformed_law_file_is_named_with_its_field(files, name, field, verb, query):
    before = snapshot(files)
    code, out, err = cli(verb, files / name, *query)
    line = one_line(err)
    assert code == 2 and str(files / name) in line and field in line, line
    assert out == "" and snapshot(files) == before


def test_predict_json_at_an_absurd_point_is_valid_json_with_null(tmp_path):
    steep = make_law({**EPOCH, "alpha": 2.9, "beta": 2.9}, spread=0.001).save(tmp_path / "steep.json")
    code, out, err = cli("predict", steep, "--N=1e-200", "--D=1e-200", "--json", "--tolerance=1e300")
    assert code == 0 and "Traceback" not in err
    prediction = json.loads(out)["predictions"][0]  # JSON, not "Out of range float values"
    assert prediction["estimate"] is None and prediction["N"] == 1e-200


@pytest.mark.parametrize("argv, message", [
    (["--budgets=nan"], "argument --budgets: 'nan': must be a finite number"),
    (["--budgets=1e21,-1"], "argument --budgets: -1: must be a finite number above zero"),
    (["--inference_tokens=-1"], "argument --inference_tokens: -1: must be a finite number above zero"),
    (["--inference_tokens=nan"], "argument --inference_tokens: 'nan': must be a finite number"),
    (["--bootstrap=-1"], "argument --bootstrap: -1: must be an integer >= 0"),
    (["--floor=nan"], "--floor=nan: an irreducible loss must be a finite number above zero"),
    (["--floor=-1"], "--floor=-1: an irreducible loss must be a finite number above zero"),
])
def test_report_flags_name_themselves(files, tmp_path, argv, message):
    code, _, err = cli("report", files / "table.csv", "-o", tmp_path / "r.html", *argv)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("verb, extra", [("fit", ["--bootstrap=0"]), ("report", [])])
def test_an_output_that_cannot_be_written_is_refused_before_the_work(files, tmp_path, verb, extra):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("keep")
    before = snapshot(tmp_path)
    code, _, err = cli(verb, files / "table.csv", "-o", tmp_path / "a_folder", *extra)
    assert code == 2 and f"-o {tmp_path / 'a_folder'}: is a folder; give a file path" in one_line(err)
    code, _, err = cli(verb, files / "table.csv", "-o", tmp_path / "a_file" / "out.json", *extra)
    assert code == 2 and f"{tmp_path / 'a_file'} is a file, not a folder" in one_line(err)
    assert snapshot(tmp_path) == before


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A real small (or read-only) disk at `folder` for the test: a tmpfs mount, removed after.
    Skips where mounting is not permitted (it needs root or CAP_SYS_ADMIN)."""
    folder.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here: no real read-only or full disk")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def small_disks(tmp_path):
    """A read-only disk, a full one and one with a single 4 KiB page free (64 KiB each)."""
    with tmpfs(tmp_path / "read_only", "size=64k,ro") as read_only, tmpfs(tmp_path / "full", "size=64k") as full, \
            tmpfs(tmp_path / "almost", "size=64k") as almost:
        (almost / "filler").write_bytes(b"x" * (60 * 1024))
        with pytest.raises(OSError, match="No space left on device"), open(full / "filler", "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        yield {"read-only": read_only, "full": full, "almost full": almost}


@pytest.mark.parametrize("verb, flag, extra", [("fit", "-o", ["--bootstrap=0"]), ("report", "-o", []),
                                               ("demo", "--output", [])])
def test_a_read_only_or_full_disk_is_refused_before_the_work(files, tmp_path, small_disks, verb, flag, extra):
    table = [] if verb == "demo" else [files / "table.csv"]
    if verb == "demo":
        extra = [f"--sweep_dir={tmp_path / 'sweep'}"]
    for problem, reason in (("read-only", "Read-only file system"), ("full", "No space left on device")):
        output = small_disks[problem] / "out"
        code, _, err = cli(verb, *table, flag, output, *extra)
        assert code == 2 and f"{flag} {output}: cannot write in {small_disks[problem]} ({reason})" in one_line(err)
    if verb == "demo":  # its sweep folder too
        code, _, err = cli(verb, f"--sweep_dir={small_disks['read-only'] / 'sweep'}", "-o", tmp_path / "r.html")
        assert code == 2 and one_line(err).startswith(f"scaling demo: error: --sweep_dir {small_disks['read-only']}")
        assert "(Read-only file system)" in err
    assert not (tmp_path / "sweep").exists()


def test_a_disk_that_fills_during_the_write_is_named_in_one_line_and_nothing_is_left(files, small_disks):
    """The check before the work finds the one free page; the law file (with its 50 bootstrap
    draws) needs more."""
    folder = small_disks["almost full"]
    before = snapshot(folder)
    code, _, err = cli("fit", files / "table.csv", "-o", folder / "law.json", "--bootstrap=50")
    assert code == 1
    assert f"scaling fit: error: No space left on device ({folder / 'law.json'}); files already written are intact" \
        in one_line(err)
    assert snapshot(folder) == before  # no partial law file, no temporary file


def test_a_checkpoint_the_disk_refuses_is_named_in_one_phrase_without_orbaxs_error_lines(small_disks, capfd):
    import numpy as np

    from scaling.checkpoints import RunCheckpoints, write_failure
    for problem, reason in (("full", "No space left on device"), ("read-only", "Read-only file system")):
        checkpoints = RunCheckpoints(small_disks[problem] / "run", asynchronous=False)
        with pytest.raises(Exception) as refused:
            checkpoints.save("trunk", 1, {"w": np.ones((64, 64))}, {"m": np.zeros((64, 64))}, {"step": 1})
            checkpoints.wait()
        found = write_failure(refused.value)
        assert found.startswith(f"cannot write {small_disks[problem]}") and found.endswith(f": {reason}"), found
    captured = capfd.readouterr()
    assert "ERROR" not in captured.err and "Traceback" not in captured.err, captured.err


def test_recommend_says_where_a_target_it_derived_came_from(files):
    code, _, err = cli("recommend", files / "law.json", "--train_flops=1e21", "--inference_queries=1e9",
                       "--tokens_per_query=100", "--max_params=1e3")
    line = one_line(err)
    assert code == 2 and "the target (the compute-optimal model's loss" in line
    assert "at --train_flops 1.000e+21, no --target_loss given) is out of reach" in line
    code, _, err = cli("recommend", files / "law.json", "--target_loss=1.5", "--inference_queries=1e9",
                       "--tokens_per_query=100")
    assert code == 2 and "--target_loss 1.5 is out of reach: the law's E = 1.8172 is at or above" in one_line(err)


@pytest.mark.parametrize("flag", ["--context=-5", "--context=0"])
def test_describe_refuses_a_context_that_is_not_positive(flag):
    code, out, err = cli("describe", "--gin_file=gin/models/p50k.gin", flag)
    assert code == 2 and f"argument --context: {flag.split('=')[1]}: must be an integer above zero" in one_line(err)
    assert out == ""


# -- 4. the teacher: replies checked before they are cached ------------------------------------------


class _Reply(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose reply the test chooses per document (server.replies:
    a word in the document -> what to send)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        kind = next((k for k in self.server.replies if k in prompt), "ok")
        with self.server.lock:
            self.server.asked[kind] = self.server.asked.get(kind, 0) + 1
        message = {"role": "assistant", "content": "<think>thought about it</think>"}
        usage = {"completion_tokens": 3}
        if kind == "empty":
            message["content"] = "<think></think>"
        elif kind == "string_message":
            message = "thought about it"
        elif kind == "list_usage":
            usage = [3]
        elif kind == "negative_tokens":
            usage = {"completion_tokens": -7}
        elif kind == "retry_after" and self.server.asked[kind] == 1:
            self._send(429, b'{"error": "slow down"}', {"Retry-After": "120"})
            return
        data = json.dumps({"choices": [{"message": message}], "usage": usage}).encode()
        if kind == "drip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for byte in data:  # a byte every 0.1 s: each socket read gets something
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up: what the test wants
                pass
            return
        self._send(200, data)

    def _send(self, code, data, headers=None):
        self.send_response(code)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def reply_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reply)
    server.daemon_threads, server.lock, server.asked = True, threading.Lock(), {}
    server.replies = ("empty", "string_message", "list_usage", "negative_tokens", "retry_after", "drip")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _teacher(server, **settings):
    from scaling.data.teachers import OpenAICompatibleTeacher
    teacher = OpenAICompatibleTeacher(**{
        "base_url": f"http://127.0.0.1:{server.server_address[1]}", "model": "m", "params": 1e9, "api_key_env": "",
        "timeout_s": 5.0, "backoff_s": 0.01, "backoff_max_s": 0.05, "max_retries": 1, **settings})
    teacher.check()
    return teacher


def test_bad_replies_fail_their_document_only_and_are_never_cached(reply_server, tmp_path):
    from scaling.data import cache as cache_lib
    from scaling.data.augment import AugmentConfig, augment

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    kinds = ("ok", "empty", "string_message", "list_usage", "negative_tokens", "ok")
    with open(corpus / "docs.jsonl", "w") as f:
        for i, kind in enumerate(kinds):
            f.write(json.dumps({"text": f"document {i} is {kind}"}) + "\n")
    config = AugmentConfig(source="folder", path=str(corpus), cache_dir=str(tmp_path / "cache"), teacher="openai")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        summary = augment(config, progress=False, teacher=_teacher(reply_server))
    assert summary["written"] == 2 and summary["failed"] == 4, summary
    records = list(cache_lib.read_records(tmp_path / "cache"))
    assert sorted(r["doc_id"].rsplit(":", 1)[1] for r in records) == ["1", "6"]
    assert all(r["thinking"] == "thought about it" and r["tokens_generated"] == 3 for r in records)
    for problem in ("empty completion", "choices[0].message is a str", "usage is a list",
                    "usage.completion_tokens = -7"):
        assert problem in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_retry_after_is_bounded_by_the_backoff_limit(reply_server, caplog):
    teacher = _teacher(reply_server, backoff_max_s=0.05)
    with caplog.at_level("WARNING", logger="scaling.data.teachers"):
        assert teacher.think("retry_after").text == "thought about it"
    assert "HTTP 429" in caplog.text and "retry 1 in 0.05s" in caplog.text  # the server asked for 120 s


def test_a_dripping_server_is_cut_off_at_the_whole_request_deadline(reply_server):
    from scaling.data.teachers import TeacherError
    teacher = _teacher(reply_server, timeout_s=0.5, max_retries=0)
    with pytest.raises(TeacherError, match="timeout: no complete reply within timeout_s = 0.5 s"):
        teacher.think("drip")  # its reply would take 0.1 s per byte, about 8 s


@pytest.mark.parametrize("binding, message", [
    ("OpenAICompatibleTeacher.base_url = 'localhost:8000'", "OpenAICompatibleTeacher.base_url: give the server as "
                                                        "http://HOST:PORT or https://HOST, got 'localhost:8000'"),
    ("OpenAICompatibleTeacher.max_retries = -1", "OpenAICompatibleTeacher.max_retries: must be an integer >= 0, got -1"),
    ("OpenAICompatibleTeacher.timeout_s = 0", "OpenAICompatibleTeacher.timeout_s: must be a number of seconds above zero"),
])
def test_teacher_settings_are_checked_before_any_request(tmp_path, binding, message):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("text")
    gin_file = tmp_path / "t.gin"
    gin_file.write_text(f"include '{REPO / 'gin' / 'data' / 'openai_teacher.gin'}'\nAugmentConfig.cache_dir = '{tmp_path / 'cache'}'\n"
                        f"AugmentConfig.path = '{corpus}'\nOpenAICompatibleTeacher.model = 'm'\n"
                        f"OpenAICompatibleTeacher.params = 1e9\n{binding}\n")
    code, out, err = cli("augment", f"--gin_file={gin_file}", "--no_progress")
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name, content, message", [
    ("latin1.txt", "caf\xe9 au lait".encode("latin-1"), "latin1.txt: not UTF-8 text (invalid continuation byte at byte 3)"),
    ("docs.jsonl", b'{"text": "fine"}\n{"text": 5}\n', "docs.jsonl:2: not a JSON object with a string field 'text'"),
    ("docs.jsonl", b'{"text": "fine"}\n{"txt": "x"}\n', "docs.jsonl:2: not a JSON object with a string field 'text'"),
])
def test_a_bad_corpus_file_is_named(tmp_path, name, content, message):
    from scaling.data.augment import AugmentConfig, source_documents
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError) as e:
        list(source_documents(AugmentConfig(source="folder", path=str(tmp_path), cache_dir=str(tmp_path / "c"))))
    assert message in str(e.value)


# -- 6. planning ---------------------------------------------------------------------------------


def _grid(tmp_path, text):
    grid = tmp_path / "grid.gin"
    grid.write_text("include 'grids/smoke.gin'\n" + text)
    return grid


def test_the_plan_refuses_what_a_run_would_fail_on_and_warns_of_an_absurd_budget(tmp_path):
    sweep_dir = tmp_path / "sweep"
    code, _, err = cli("sweep", _grid(tmp_path, "Grid.seeds = [0, 0]\n"), f"--sweep_dir={sweep_dir}")
    assert code == 2 and "Grid.seeds = [0, 0] repeats seed(s) 0" in one_line(err)
    code, _, err = cli("sweep", _grid(tmp_path, ""), f"--sweep_dir={sweep_dir}", "--throughput=0")
    assert code == 2 and "argument --throughput: 0: must be a finite number above zero" in one_line(err)
    code, out, err = cli("sweep", _grid(tmp_path, "Grid.data_budgets = [1e15]\n"), f"--sweep_dir={sweep_dir}",
                         "--dry_run", "--throughput=1e9")
    assert code == 0 and "scaling sweep: warning: the plan's training steps alone are estimated at" in one_line(err)
    assert "days on" in err and "check Grid.data_budgets (tokens)" in err
    code, _, err = cli("sweep", _grid(tmp_path, "Grid.arms = {'vanilla': 'no_such_task'}\n"),
                       f"--sweep_dir={sweep_dir}", "--dry_run")
    assert code == 2 and "train.task: unknown data task 'no_such_task': give a registered task" in one_line(err)
    code, _, err = cli("sweep", _grid(tmp_path, "Grid.infer_overrides = {'infer.samples': [0]}\n"),
                       f"--sweep_dir={sweep_dir}", "--dry_run")
    assert code == 2 and "infer.samples" in one_line(err)
    assert not sweep_dir.exists()


# -- real processes: interrupts, --help, start-up noise ------------------------------------------


def _scaling(*args):
    return [sys.executable, "-m", "scaling.cli", *map(str, args)]


# A user's environment: TensorFlow, imported by this test process, sets TF_CPP_MIN_LOG_LEVEL=1 in it.
USER_ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def _ctrl_c_reaches_it():
    """A terminal's foreground process gets Ctrl-C; one started in the background (as a test
    runner may be) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_training_checkpoints_and_a_torn_log_line_does_not_stop_the_resume(tmp_path):
    from tests.test_bad_input import TINY
    run_dir = tmp_path / "run"
    flags = [*TINY, "--gin.train.data_budgets=[20000]", "--gin.train.checkpoint_every_steps=1000",
             f"--gin.MODEL_DIR={run_dir}"]
    proc = subprocess.Popen(_scaling("train", *flags), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=USER_ENV, preexec_fn=_ctrl_c_reaches_it)
    log = run_dir / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    line = one_line(err)
    assert line.startswith("scaling train: interrupted (Ctrl-C) at step ") and "checkpoint saved" in line
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and status["step"] > 0
    assert any((run_dir / "checkpoints" / "trunk").iterdir())
    for name in ("log.jsonl", "training_rows.jsonl"):  # a kill during an append
        with open(run_dir / name, "a") as f:
            f.write('{"step": 99999, "lo')
    again = subprocess.run(_scaling("train", *flags), cwd=REPO, capture_output=True, text=True, timeout=600,
                           env=USER_ENV)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "absl::InitializeLog" not in again.stderr
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    steps = [r["step"] for _, r in read_jsonl(log)]
    assert steps == sorted(set(steps)) and 99999 not in steps and steps[0] == 1  # each step once, none lost
    assert any(r.get("is_final") for _, r in read_jsonl(run_dir / "training_rows.jsonl"))


@pytest.mark.slow
def test_training_onto_a_full_disk_stops_in_one_line_and_resumes_once_space_is_freed(tmp_path):
    """A 1 MiB disk holds the first checkpoint, not the second: Orbax's failed save is one line
    (no absl ERROR lines, no traceback), status.json says why, the complete checkpoint stays and
    the failed one's partial files go; with space freed the same command finishes the run."""
    from tests.test_bad_input import TINY
    with tmpfs(tmp_path / "read_only", "size=64k,ro") as read_only:  # refused before the work
        run_dir = read_only / "run"
        proc = subprocess.run(_scaling("train", *TINY, f"--gin.MODEL_DIR={run_dir}"), cwd=REPO, capture_output=True,
                              text=True, timeout=300, env=USER_ENV)
        assert proc.returncode == 1
        assert one_line(proc.stderr) == (f"scaling train: --gin.MODEL_DIR {run_dir / 'status.json'}: cannot write in "
                                         f"{read_only} (Read-only file system)")
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        run_dir = disk / "run"
        flags = [*TINY, f"--gin.MODEL_DIR={run_dir}"]
        proc = subprocess.run(_scaling("train", *flags), cwd=REPO, capture_output=True, text=True, timeout=600,
                              env=USER_ENV)
        assert proc.returncode == 1
        line = one_line(proc.stderr)
        assert line.startswith(f"scaling train: cannot write {run_dir / 'checkpoints'}{os.sep}"), line
        assert ": No space left on device; stopped at step " in line and "rerun the same command to resume" in line
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "failed" and status["reason"] == line.removeprefix("scaling train: ")
        assert not list(run_dir.glob("checkpoints/*/*orbax-checkpoint-tmp*"))
        kept = sorted(p.name for p in (run_dir / "checkpoints" / "trunk").iterdir())
        assert kept and all(name.isdigit() for name in kept)
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
        again = subprocess.run(_scaling("train", *flags), cwd=REPO, capture_output=True, text=True, timeout=600,
                               env=USER_ENV)
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in again.stderr and "ERROR" not in again.stderr
        assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
        steps = [r["step"] for _, r in read_jsonl(run_dir / "log.jsonl")]
        assert steps == list(range(1, steps[-1] + 1))  # each step once, none lost


@pytest.mark.slow
def test_ctrl_c_during_a_fit_is_one_line_exit_130_and_the_old_output_intact(files, tmp_path):
    output = tmp_path / "law.json"
    output.write_text('{"kept": true}\n')
    before = snapshot(tmp_path)
    proc = subprocess.Popen(_scaling("fit", files / "table.csv", "-o", output, "--bootstrap=1000000"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=USER_ENV,
                            preexec_fn=_ctrl_c_reaches_it)
    time.sleep(8)  # imports done or not, the one interrupt path takes it
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "scaling fit: interrupted (Ctrl-C); files are written whole or not at all" in one_line(err)
    assert snapshot(tmp_path) == before


def _interrupt_when(proc, ready, timeout_s: float = 300) -> tuple[str, str]:
    """Ctrl-C `proc` once `ready()` holds (it must still be running), as a terminal does: SIGINT
    to its whole process group (its worker processes too). Its (stdout, stderr), once every
    process holding them has ended."""
    deadline = time.monotonic() + timeout_s
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "it finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=120)


def _popen(*args, env=None):
    """`scaling <args>` in a process group of its own, as a terminal's foreground job."""
    return subprocess.Popen(_scaling(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or USER_ENV, preexec_fn=_ctrl_c_reaches_it, start_new_session=True)


@pytest.mark.slow
def test_ctrl_c_during_a_report_is_one_line_exit_130_and_the_old_report_intact(files, tmp_path):
    output = tmp_path / "report.html"
    output.write_text("<p>the report before</p>\n")
    before = snapshot(tmp_path)
    proc = _popen("report", files / "table.csv", "-o", output)
    started = time.monotonic()
    out, err = _interrupt_when(proc, lambda: time.monotonic() - started > 8)  # fitting its laws by then
    assert proc.returncode == 130
    assert "scaling report: interrupted (Ctrl-C); files are written whole or not at all" in one_line(err)
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny training run (p50k, 2,000 tokens)."""
    from tests.test_bad_input import TINY
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    proc = subprocess.run(_scaling("train", *TINY, f"--gin.MODEL_DIR={run_dir}"), cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=USER_ENV)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
def test_ctrl_c_during_inference_is_one_line_exit_130_and_the_rows_written_are_kept(tiny_run):
    from scaling.infer_rows import ROWS_FILE
    rows = tiny_run / ROWS_FILE
    proc = _popen("infer", f"--run_dir={tiny_run}", "--gin_file=gin/runs/infer.gin", "--gin.infer.thinking_budgets=[0,16]")
    out, err = _interrupt_when(proc, lambda: rows.is_file() and rows.read_text().endswith("\n"))
    written = rows.read_text()  # every row written before the Ctrl-C (nothing is written after it)
    assert proc.returncode == 130
    *warnings, line = err.strip().splitlines()  # warned first: the prompts outgrow the tiny model's context
    assert "Traceback" not in err and all(w.startswith("scaling infer: warning: ") for w in warnings), err
    assert line.startswith("scaling infer: interrupted (Ctrl-C); files are written whole or not at all")
    assert rows.read_text() == written and [r for _, r in read_jsonl(rows)]


@pytest.mark.slow
def test_ctrl_c_during_augment_is_one_line_exit_130_and_the_cache_keeps_every_record(openai_server, tmp_path):
    from scaling.data import cache as cache_lib
    corpus_dir, cache_dir = tmp_path / "corpus", tmp_path / "cache"
    _write_corpus(corpus_dir, 200)
    openai_server.faults_per_document, openai_server.delay = 0, 0.2  # 200 documents, 4 at a time: 10 s
    proc = _popen("augment", f"--gin_file={_gin(tmp_path, openai_server, cache_dir, corpus_dir)}", "--no_progress",
                  env={**USER_ENV, "TEACHER_API_KEY": "k"})
    out, err = _interrupt_when(proc, lambda: cache_dir.is_dir() and len(list(cache_lib.read_records(cache_dir))) >= 8)
    assert proc.returncode == 130
    assert "scaling augment: interrupted (Ctrl-C); files are written whole or not at all" in one_line(err)
    records = list(cache_lib.read_records(cache_dir))  # readable: complete records, a torn last line skipped
    assert 8 <= len(records) < 200 and len({r["key"] for r in records}) == len(records)


def test_help_imports_neither_jax_nor_tensorflow_and_start_up_prints_no_native_noise():
    from scaling.cli import VERBS
    verbs = list(VERBS)
    # one process, every verb's --help in turn: the modules each one imported are checked after it
    script = ("import sys\nfrom scaling import cli\n"
              "for verb in sys.argv[1:]:\n"
              "    try:\n        cli.main([verb, '--help'])\n    except SystemExit:\n        pass\n"
              "    print('imported by', verb, sorted(m for m in ('jax', 'tensorflow') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script, *verbs], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=USER_ENV)
    assert proc.returncode == 0, proc.stderr
    for verb in verbs:
        assert "usage: scaling " + verb in proc.stdout, verb
        assert f"imported by {verb} []" in proc.stdout, (verb, proc.stdout[-500:])
    # a verb that does import TensorFlow (its data pipeline): none of its native start-up lines reach
    # the user, also after something only asked whether TensorFlow is installed (etils does, when
    # Orbax restores a checkpoint: a resumed run's later import printed the lines)
    for probe in ("", "import importlib.util\nimportlib.util.find_spec('tensorflow')\n"):
        proc = subprocess.run([sys.executable, "-c", f"from scaling import cli\n{probe}import tensorflow\nprint('imported')"],
                              cwd=REPO, capture_output=True, text=True, timeout=120, env=USER_ENV)
        assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr
        for noise in ("absl::InitializeLog", "oneDNN", "cudart", "cuda drivers"):
            assert noise not in proc.stderr, (probe, proc.stderr)
