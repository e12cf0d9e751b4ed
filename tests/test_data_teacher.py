"""The OpenAI-compatible teacher and `scaling augment` against a real HTTP server that speaks the
OpenAI protocol and injects faults: timeouts, 500, 429, truncated JSON, dropped connections."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gin
import pytest

from scaling import configuration
from scaling.configuration import ConfigError
from scaling.data import cache as cache_lib
from scaling.data.augment import AugmentConfig
from scaling.data.teachers import OpenAICompatibleTeacher, ProgrammaticTeacher, TeacherError, teacher_named

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-test-6f1d0c9e-never-write-me"
FAULTS = ("500", "429", "truncated", "reset", "slow", "badshape")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"] if "messages" in body else body["prompt"]
        with server.lock:
            server.count += 1
            attempt = server.attempts[text]
            server.attempts[text] += 1
            server.auth.add(self.headers.get("Authorization", ""))
            server.paths.add(self.path)
        # each document meets `faults_per_document` faults (all kinds across documents), then succeeds
        if attempt < server.faults_per_document:
            fault = server.faults[(len(text) + attempt) % len(server.faults)]
        else:
            fault = "ok"
        server.served[fault] += 1
        time.sleep(server.delay)
        if fault == "500" or fault == "429":
            self._send(int(fault), b'{"error": "try later"}')
            return
        if fault == "reset":
            self.connection.shutdown(2)
            self.connection.close()
            return
        if fault == "slow":
            time.sleep(server.slow_s)
        document = text.split("<document>\n", 1)[1].split("\n</document>", 1)[0]
        thinking = f"Let me think about {len(document.split())} words: {document[:40]}"
        if self.path.endswith("/chat/completions"):
            choice = {"message": {"role": "assistant", "content": f"<think>{thinking}"}, "finish_reason": "stop"}
        else:
            choice = {"text": thinking, "finish_reason": "stop"}
        reply = {"choices": [choice], "usage": {"completion_tokens": len(thinking.split())}}
        if fault == "badshape":
            reply = {"choices": []}
        data = json.dumps(reply).encode()
        if fault == "truncated":
            self._send(200, data[: len(data) // 2])
            return
        self._send(200, data)

    def _send(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def openai_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.lock, server.count, server.auth, server.paths = threading.Lock(), 0, set(), set()
    server.faults, server.faults_per_document, server.delay, server.slow_s = FAULTS, 3, 0.0, 1.5
    server.attempts, server.served = Counter(), Counter()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _config(server, **kw):
    base = dict(base_url=f"http://127.0.0.1:{server.server_address[1]}", model="tiny-teacher", params=1e9,
                api_key_env="TEST_TEACHER_KEY", timeout_s=0.5, backoff_s=0.01, backoff_max_s=0.05, max_retries=10)
    return OpenAICompatibleTeacher(**{**base, **kw})


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_teacher_survives_every_fault(openai_server, endpoint, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", SECRET)
    teacher = _config(openai_server, endpoint=endpoint)
    docs = [f"Document number {i} says something{'!' * i}" for i in range(6)]
    results = [teacher.think(d) for d in docs]
    for doc, r in zip(docs, results):
        assert r.text.startswith("Let me think about") and doc[:30] in r.text
        assert "<think>" not in r.text and r.tokens_generated > 0
    assert openai_server.count == 4 * len(docs)  # three faults each, retried, then the answer
    assert set(openai_server.served) == {"ok", *FAULTS}
    assert openai_server.auth == {f"Bearer {SECRET}"}
    assert openai_server.paths == {"/v1/chat/completions" if endpoint == "chat" else "/v1/completions"}
    assert teacher.flops_per_token == 2e9
    assert SECRET not in repr(teacher.__dict__)


def test_teacher_gives_up_with_a_clear_error(openai_server):
    openai_server.faults, openai_server.faults_per_document = ("500",), 100
    teacher = _config(openai_server, max_retries=2)
    with pytest.raises(TeacherError, match="gave up after 3 attempts; last: HTTP 500"):
        teacher.think("a document")


def test_a_teachers_sampling_settings_key_the_cache_and_a_bad_setting_is_named(openai_server):
    """The settings live on the teacher object; those that change what is written (prompt,
    sampling) change its cache key, so a changed one is never served another setting's thinking."""
    teacher = _config(openai_server)
    assert _config(openai_server, temperature=0.7).config_hash != teacher.config_hash
    assert _config(openai_server, max_thinking_tokens=16).config_hash != teacher.config_hash
    assert _config(openai_server, concurrency=2, timeout_s=9.0).config_hash == teacher.config_hash
    with pytest.raises(ConfigError, match="OpenAICompatibleTeacher.endpoint: 'chat' or 'completions'"):
        teacher_named(_config(openai_server, endpoint="responses"))
    with pytest.raises(ConfigError, match="ProgrammaticTeacher.emulated_params: must be a number >= 0"):
        teacher_named(ProgrammaticTeacher(emulated_params=-1.0))


def _write_corpus(folder: Path, n: int):
    folder.mkdir()
    with open(folder / "docs.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"Source document {i}: the cat sat on mat number {i * 7}."}) + "\n")


def _gin(tmp_path, server, cache_dir, corpus_dir):
    gin_file = tmp_path / "teacher.gin"
    gin_file.write_text(
        "include 'data/openai_teacher.gin'\n"
        f"AugmentConfig.cache_dir = '{cache_dir}'\nAugmentConfig.path = '{corpus_dir}'\n"
        "OpenAICompatibleTeacher.model = 'tiny-teacher'\nOpenAICompatibleTeacher.params = 1e9\n"
        f"OpenAICompatibleTeacher.base_url = 'http://127.0.0.1:{server.server_address[1]}'\n"
        "OpenAICompatibleTeacher.timeout_s = 0.5\nOpenAICompatibleTeacher.backoff_s = 0.01\n"
        "OpenAICompatibleTeacher.backoff_max_s = 0.05\nOpenAICompatibleTeacher.max_retries = 20\n"
        "OpenAICompatibleTeacher.concurrency = 4\n")
    return gin_file


def _scaling(*args):
    return [sys.executable, "-m", "scaling.cli", *map(str, args)]


@pytest.mark.slow
def test_augment_kill_and_resume_writes_each_document_once(openai_server, tmp_path):
    n_docs = 80
    corpus_dir, cache_dir = tmp_path / "corpus", tmp_path / "cache"
    _write_corpus(corpus_dir, n_docs)
    gin_file = _gin(tmp_path, openai_server, cache_dir, corpus_dir)
    openai_server.delay = 0.05
    env = {**os.environ, "TEACHER_API_KEY": SECRET}
    proc = subprocess.Popen(_scaling("augment", f"--gin_file={gin_file}", "--no_progress"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        if cache_dir.exists() and len(list(cache_lib.read_records(cache_dir))) >= 15:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "augment finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    before = list(cache_lib.read_records(cache_dir))
    assert 15 <= len(before) < n_docs
    done = subprocess.run(_scaling("augment", f"--gin_file={gin_file}"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == len(before) and summary["written"] == n_docs - len(before)
    assert summary["teacher_flops"] == 2e9 * summary["tokens_generated"]
    records = list(cache_lib.read_records(cache_dir))
    texts = Counter(r["text"] for r in records)
    assert len(records) == n_docs and set(texts.values()) == {1}
    assert len({r["key"] for r in records}) == n_docs
    expected = {json.loads(line)["text"] for line in (corpus_dir / "docs.jsonl").read_text().splitlines()}
    assert set(texts) == expected
    # the API key is nowhere: not in the cache, the written config, nor the output
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in done.stdout + done.stderr + out.decode() + err.decode()
    # and a third run has nothing to do
    again = subprocess.run(_scaling("augment", f"--gin_file={gin_file}", "--no_progress"), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout.strip().splitlines()[-1])["written"] == 0


def _prepare_tfds_dataset(data_dir: Path, texts: list[str]) -> str:
    """A real TFDS dataset prepared on disk (nothing downloaded); returns its registered name."""
    import tensorflow_datasets as tfds

    class AugmentTestStories(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"story": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, text in enumerate(texts):
                yield i, {"story": text}

    builder = AugmentTestStories(data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder.name


@pytest.mark.slow
def test_augment_reads_a_tfds_dataset(openai_server, run_cli, tmp_path):
    """`source = 'tfds'` loads a prepared dataset from `data_dir` by name, as on a pod with TFDS data."""
    texts = [f"Story {i}: the fox ran {i * 3} miles." for i in range(12)]
    name = _prepare_tfds_dataset(tmp_path / "tfds", texts)
    gin_file = _gin(tmp_path, openai_server, tmp_path / "cache", name)
    openai_server.faults_per_document = 1
    common = [f"--gin_file={gin_file}", "--gin.AugmentConfig.source='tfds'", "--no_progress",
              f"--gin.AugmentConfig.data_dir='{tmp_path / 'tfds'}'", "--gin.AugmentConfig.text_field='story'"]
    proc = run_cli("augment", *common, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = list(cache_lib.read_records(tmp_path / "cache"))
    assert sorted(r["text"] for r in records) == sorted(texts)
    assert all(r["doc_id"].startswith(f"{name}/train/") and r["thinking"] for r in records)
    proc = run_cli("augment", *common, "--gin.AugmentConfig.text_field='body'", timeout=300)
    assert proc.returncode == 2 and "AugmentConfig.text_field" in proc.stderr and "'story'" in proc.stderr


def test_augment_reports_bad_configuration(run_cli, tmp_path):
    proc = run_cli("augment", "--gin_file=gin/data/openai_teacher.gin", f"--gin.AugmentConfig.cache_dir={tmp_path}/c",
                   f"--gin.AugmentConfig.path={tmp_path}/missing", "--gin.OpenAICompatibleTeacher.model=m",
                   "--gin.OpenAICompatibleTeacher.params=1e9")
    assert proc.returncode == 2 and "AugmentConfig.path" in proc.stderr and "not a folder" in proc.stderr
    proc = run_cli("augment", "--gin_file=gin/data/synthetic_programmatic.gin")
    assert proc.returncode == 2 and "cache_dir" in proc.stderr


def test_a_teacher_bound_as_an_object_is_constructed_from_its_settings_and_recorded(openai_server, run_cli,
                                                                                     tmp_path):
    """`AugmentConfig.teacher = @OpenAICompatibleTeacher()` is the same teacher as 'openai': built from
    its settings (OpenAICompatibleTeacher.*), it augments through the server, and the cache's gin file records it."""
    corpus_dir, cache_dir = tmp_path / "corpus", tmp_path / "cache"
    _write_corpus(corpus_dir, 3)
    openai_server.faults_per_document = 0
    gin_file = _gin(tmp_path, openai_server, cache_dir, corpus_dir)
    gin_file.write_text(gin_file.read_text() + "AugmentConfig.teacher = @OpenAICompatibleTeacher()\n")

    # in this process, the include as the command resolves it: the file first, then the bindings
    bindings = tuple(line for line in gin_file.read_text().splitlines() if line and not line.startswith("include"))
    configuration.parse(configuration.GinArgs(("data/openai_teacher.gin",), bindings))
    try:
        teacher = AugmentConfig().teacher
    finally:
        gin.clear_config()
    assert isinstance(teacher, OpenAICompatibleTeacher)
    assert (teacher.teacher_id, teacher.flops_per_token, teacher.concurrency) == ("openai:tiny-teacher", 2e9, 4)
    assert teacher.config_hash == _config(openai_server).config_hash  # same sampling

    proc = run_cli("augment", f"--gin_file={gin_file}", "--no_progress", env={"TEACHER_API_KEY": SECRET})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["written"] == 3 and summary["teacher_id"] == "openai:tiny-teacher"
    assert summary["config_hash"] == teacher.config_hash
    text = next(cache_dir.glob("augment-*.gin")).read_text()
    for line in ("AugmentConfig.teacher = @OpenAICompatibleTeacher()", "OpenAICompatibleTeacher.model = 'tiny-teacher'",
                 "OpenAICompatibleTeacher.concurrency = 4"):
        assert line in text, text
    # the programmatic teacher, bound as an object, still refuses a source without synthetic documents
    proc = run_cli("augment", f"--gin_file={gin_file}", "--gin.AugmentConfig.teacher=@ProgrammaticTeacher()")
    assert proc.returncode == 2 and "needs source 'synthetic'" in proc.stderr, proc.stderr
