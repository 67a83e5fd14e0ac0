"""Every fenced ``python`` block in README.md and docs/*.md runs, and what the docs quote matches.

- Each file's python blocks run in order in one namespace (a page reads top to bottom), in a temp
  folder holding a copy of ``examples/`` and with every provider client pointed at a loopback
  server (``tests/recording_server.py``), so nothing leaves 127.0.0.1. Names a snippet takes as
  given (``prompt``, ``llm``, ``retriever`` ...) are defined by the file's entry in ``GIVEN``
  below, each with real framework objects; a given name no block uses is an error (stale setup).
- A block preceded by ``<!-- not-run: REASON -->`` is skipped; the reason is required.
- Quoted output is checked: ``print(...)`` followed by comment lines must print what the comment
  says (the comment may add a note after two spaces), and an expression statement with a trailing
  comment that starts with a Python literal (``# 765``, ``# (588, 756): what ...``) must equal it.
- A ``bash`` block followed (after at most a paragraph) by ``<!-- output -->`` and a plain fence
  is run (every line a ``cares`` / ``python -m cares_integrations ...`` command) and the last
  command's output must be the quoted text, line for line.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gzip
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REAL_PAGES, render_real_pages
from recording_server import RecordingServer

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
MARKER = re.compile(r"<!--\s*not-run\b:?(?P<reason>.*?)-->", re.S)
OUTPUT_MARKER = "<!-- output -->"


@dataclass
class Block:
    """One fenced code block: its language, dedented text, first code line (1-based) and the
    not-run reason ('' when none, None when not marked)."""

    path: Path
    lang: str
    code: str
    line: int
    not_run: str | None
    preceding: str  # the text between the previous fence and this one

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, in order."""
    text = path.read_text()
    found, last_end = [], 0
    for m in FENCE.finditer(text):
        preceding = text[last_end:m.start()]
        lines_before = preceding.rstrip().splitlines()
        marker = MARKER.fullmatch(lines_before[-1].strip()) if lines_before else None
        indent = len(m.group("indent"))
        code = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m.group("body").splitlines(keepends=True))
        found.append(Block(path, m.group("lang"), code, text[:m.start()].count("\n") + 2,
                           marker.group("reason").strip() if marker else None, preceding))
        last_end = m.end()
    return found


# ---------------------------------------------------------------------------------------------
# What each page takes as given. Real objects only: chat models and LLMs are the real provider
# clients (their base URLs point at the loopback server, see ``provider_env``).
# ---------------------------------------------------------------------------------------------
_PAGES = """
import base64, io
from PIL import Image
page_path = "examples/pages/invoice-table-footnotes.png"
png_bytes = open(page_path, "rb").read()
page_b64 = base64.b64encode(png_bytes).decode()
data_url = "data:image/png;base64," + page_b64
"""

GIVEN: dict[str, str] = {
    "README.md": _PAGES + """
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.embeddings.mock_embed_model import MockMultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageNode
from llama_index.llms.openai import OpenAI
prompt = ChatPromptTemplate.from_messages([("human", [
    {"type": "text", "text": "{question}"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,{page}"}}])])
llm = ChatOpenAI(model="gpt-4o")
retriever = MultiModalVectorStoreIndex(
    [ImageNode(image_path=page_path, metadata={"file_name": page_path})], embed_model=MockEmbedding(embed_dim=8),
    image_embed_model=MockMultiModalEmbedding(embed_dim=8)).as_retriever(image_similarity_top_k=1)
mm_llm = OpenAI(model="gpt-4o")
""",
    "docs/agents.md": """
import os, shutil
from langchain_openai import ChatOpenAI
os.makedirs("pages")
shutil.copy("examples/pages/invoice-table-footnotes.png", "pages/")
def lookup_invoice(number: str) -> str:
    \"\"\"Look an invoice up by its number.\"\"\"
    return "paid"
tools = [lookup_invoice]
""",
    "docs/calibration.md": """
real_pages("labels.jsonl")
""",
    "docs/quickstart-by-task.md": """
real_pages("labels.jsonl")  # what the page's bash block does: the fixture's pages and labels
""",
    "docs/default-router.md": """
from PIL import Image
image = Image.open("examples/pages/report-serif.png")
""",
    "docs/images.md": _PAGES + """
from cares_integrations import load_router, route_and_resize
from cares_integrations.langchain import CaresImageResizer
from langchain_core.tools import tool
from llama_index.core.llms import ChatMessage, ImageBlock, TextBlock
pil_page = Image.open(page_path)
page_bytes = png_bytes
buffer = io.BytesIO(); pil_page.convert("RGB").save(buffer, "JPEG")
jpeg_data_url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
@tool
def my_tool(image: str, question: str) -> str:
    \"\"\"Answer a question about a page image.\"\"\"
    return "42"
messages = [ChatMessage(role="user", blocks=[ImageBlock(image=png_bytes), TextBlock(text="What is the total?")])]
router = load_router()
images = [png_bytes, data_url]
question = "What is the total?"
""",
    "docs/langchain.md": _PAGES + """
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI
inputs = {"question": "What is the net amount?", "page": page_b64}
many_inputs = [inputs, {"question": "What is the invoice number?", "page": page_b64}]
question = "What is the net amount?"
retriever = InMemoryVectorStore.from_documents(
    [Document(page_content="page 1 of the invoice", metadata={"image": data_url})],
    DeterministicFakeEmbedding(size=8)).as_retriever(search_kwargs={"k": 1})
page1_b64 = page_b64
model = ChatOpenAI(model="gpt-4o")
""",
    "docs/learned-default.md": """
import shutil
from pathlib import Path
import cares_integrations.routers.learned as learned
shutil.copytree(Path(learned.__file__).parent / "learned_default", "runs/ld/model")  # a recipe run's output
""",
    "docs/llama_index.md": _PAGES + """
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.embeddings.mock_embed_model import MockMultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import ChatMessage, ImageBlock, TextBlock
from llama_index.core.schema import ImageDocument, ImageNode, TextNode
from llama_index.llms.openai import OpenAI
index = mm_index = MultiModalVectorStoreIndex(
    [ImageNode(image_path=page_path, metadata={"file_name": page_path}), TextNode(text="All amounts are in EUR.")],
    embed_model=MockEmbedding(embed_dim=8), image_embed_model=MockMultiModalEmbedding(embed_dim=8))
vlm = llm = OpenAI(model="gpt-4o")
messages = [ChatMessage(role="user", blocks=[ImageBlock(image=png_bytes), TextBlock(text="What is the total?")])]
image_documents = [ImageDocument(image_path=page_path)]
""",
    "docs/training.md": """
from cares_integrations.training.synthetic import generate_pages, write_dataset
write_dataset(generate_pages(1, seed=0), "data/mine")
""",
}


@pytest.fixture()
def provider_env(monkeypatch):
    """Point OpenAI, Anthropic and LlamaIndex's OpenAI client at one loopback recording server."""
    with RecordingServer() as server:
        for key in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
            monkeypatch.setenv(key, server.url + "/v1")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        yield server




@pytest.fixture(scope="session")
def real_pages_dir(tmp_path_factory) -> Path:
    """The fixture's real pages rendered where its labels expect them, with the PP-OCR labels as
    ``labels.jsonl`` (pdftoppm from poppler-utils)."""
    out = render_real_pages(tmp_path_factory.mktemp("real_pages"))
    (out / "labels.jsonl").write_bytes(gzip.decompress((REAL_PAGES / "labels-ppocr.jsonl.gz").read_bytes()))
    return out


@pytest.fixture()
def doc_dir(tmp_path, monkeypatch):
    """A temp working folder with a copy of examples/ (the pages the snippets open)."""
    shutil.copytree(ROOT / "examples" / "pages", tmp_path / "examples" / "pages")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@contextlib.contextmanager
def _restored_globals():
    """LlamaIndex's root dispatcher keeps handlers a snippet adds; drop them afterwards."""
    from llama_index.core.instrumentation import get_dispatcher

    dispatcher = get_dispatcher()
    before = list(dispatcher.event_handlers)
    try:
        yield
    finally:
        dispatcher.event_handlers[:] = before


def _comments(code: str) -> dict[int, str]:
    """Line (1-based, in ``code``) -> the text of its comment."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string[1:].strip()
    return out


def _literal_prefix(comment: str):
    """The Python literal a comment starts with (``765``, ``(588, 756): note``), or raise."""
    for end in range(len(comment), 0, -1):
        head = comment[:end]
        if end < len(comment) and not re.match(r"[\s:;,]", comment[end]):
            continue
        try:
            value = ast.literal_eval(head.strip())
        except (ValueError, SyntaxError):
            continue
        if (value is None or isinstance(value, bool)) and end < len(comment):
            continue  # "# None: no files at all" explains an argument; it quotes no value
        return value
    raise ValueError(comment)


def _run_block(block: Block, ns: dict, loop: asyncio.AbstractEventLoop) -> None:
    """Run ``block`` statement by statement in ``ns``, checking the output it quotes."""
    filename = block.where.split(":")[0]
    tree = ast.parse(block.code, filename)
    lines = block.code.splitlines()
    comments = _comments(block.code)
    for stmt in tree.body:
        first, last = stmt.lineno, stmt.end_lineno  # in the block; increment_lineno moves stmt
        where = f"{filename}:{first + block.line - 1}"
        module = ast.Module([stmt], type_ignores=[])
        ast.increment_lineno(module, block.line - 1)
        code = compile(module, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        buffer = io.StringIO()
        value_wanted = (isinstance(stmt, ast.Expr) and not _is_print(stmt)
                        and last in comments and _has_literal(comments[last]))
        if value_wanted:
            expr = ast.Expression(stmt.value)
            code = compile(expr, filename, "eval", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        with contextlib.redirect_stdout(buffer):
            result = eval(code, ns)  # noqa: S307 - our own docs
            if asyncio.iscoroutine(result):
                result = loop.run_until_complete(result)
        if value_wanted:
            assert result == _literal_prefix(comments[last]), (where, result)
        if _is_print(stmt):
            quoted = []
            for line in lines[last:]:
                if not line.lstrip().startswith("#"):
                    break
                quoted.append(line.lstrip()[1:].strip())
            printed = buffer.getvalue().rstrip("\n").splitlines()
            if quoted:
                assert len(printed) == len(quoted), (where, printed, quoted)
                for got, said in zip(printed, quoted):
                    assert said == got.strip() or said.startswith(got.strip() + "  "), (where, got, said)


def _is_print(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "print")


def _has_literal(comment: str) -> bool:
    try:
        _literal_prefix(comment)
    except ValueError:
        return False
    return True


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


PY_FILES = [p for p in DOC_FILES if any(b.lang == "python" and b.not_run is None for b in blocks(p))]


# ---------------------------------------------------------------------------------------------
def test_every_not_run_marker_has_a_reason_and_a_block():
    for path in DOC_FILES:
        text = path.read_text()
        marked = {b.where for b in blocks(path) if b.not_run is not None}
        for m in MARKER.finditer(text):
            line = text[:m.start()].count("\n") + 1
            assert m.group("reason").strip(), f"{_rel(path)}:{line}: a not-run marker needs a reason"
            # the marker is on the line right before a fence
            assert any(int(w.rsplit(":", 1)[1]) in (line + 2,) for w in marked), (
                f"{_rel(path)}:{line}: a not-run marker must sit on the line before a code block")


def test_marker_parsing_requires_a_reason(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- not-run: needs a GPU -->\n```python\nx = 1\n```\n<!-- not-run -->\n```python\ny\n```\n")
    found = [(b.lang, b.not_run) for b in blocks(doc)]
    assert found == [("python", "needs a GPU"), ("python", "")]


def test_quoted_output_checks_can_fail():
    ns: dict = {}
    loop = asyncio.new_event_loop()
    try:
        bad = Block(ROOT / "README.md", "python", "print(1 + 1)\n# 3\n", 40, None, "")
        with pytest.raises(AssertionError):
            _run_block(bad, ns, loop)
        bad = Block(ROOT / "README.md", "python", "2 * 3   # (6, 1): a note\n", 40, None, "")
        with pytest.raises(AssertionError):
            _run_block(bad, ns, loop)
        good = Block(ROOT / "README.md", "python",
                     "print(2, 'x')\n# 2 x    (a note)\n(1, 2)   # (1, 2): a note\nprint(None)  # None: a note\n",
                     1, None, "")
        _run_block(good, ns, loop)
    finally:
        loop.close()


def test_given_names_are_used():
    for name, setup in GIVEN.items():
        assert (ROOT / name).is_file(), name
        path = ROOT / name
        code = "\n".join(b.code for b in blocks(path) if b.lang == "python" and b.not_run is None)
        defined = {t.id for node in ast.walk(ast.parse(setup)) if isinstance(node, ast.Assign)
                   for t in node.targets if isinstance(t, ast.Name)}
        unused = {n for n in defined if not re.search(rf"\b{re.escape(n)}\b", code)}
        unused -= {t.id for node in ast.walk(ast.parse(_PAGES)) if isinstance(node, ast.Assign)
                   for t in node.targets if isinstance(t, ast.Name)}  # the shared page, in its forms
        unused -= {"buffer"}
        assert not unused, f"{name}: GIVEN defines names no block uses: {sorted(unused)}"


@pytest.mark.parametrize("path", PY_FILES, ids=_rel)
def test_python_blocks_run(path, doc_dir, provider_env, request):
    ns: dict = {"__name__": "__doc_snippets__"}
    if "real_pages(" in GIVEN.get(_rel(path), ""):
        def real_pages(labels: str) -> None:
            """Copy the fixture's real pages here, their labels as ``labels``."""
            src = request.getfixturevalue("real_pages_dir")
            shutil.copytree(src / "pages", doc_dir / "pages")
            shutil.copy(src / "labels.jsonl", doc_dir / labels)
        ns["real_pages"] = real_pages
    loop = asyncio.new_event_loop()
    try:
        with _restored_globals():
            exec(GIVEN.get(_rel(path), ""), ns)  # noqa: S102 - the test's own setup
            for block in blocks(path):
                if block.lang == "python" and block.not_run is None:
                    try:
                        _run_block(block, ns, loop)
                    except Exception as exc:
                        raise AssertionError(f"{block.where}: {type(exc).__name__}: {exc}") from exc
    finally:
        loop.close()


# ---------------------------------------------------------------------------------------------
CLI = re.compile(r"^(cares|python -m cares_integrations(\.[\w.]+)?)\s")


def quoted_cli_outputs() -> list[tuple[Block, Block]]:
    """(bash block, output block) pairs: a plain fence right after ``<!-- output -->`` quotes the
    output of the bash block before it."""
    pairs = []
    for path in DOC_FILES:
        found = blocks(path)
        for prev, block in zip(found, found[1:]):
            if block.lang == "" and block.preceding.rstrip().endswith(OUTPUT_MARKER):
                assert prev.lang == "bash", f"{block.where}: <!-- output --> must follow a bash block"
                pairs.append((prev, block))
    return pairs


def test_quickstart_by_task_snippets_are_short_and_linked():
    found = [b for b in blocks(ROOT / "docs" / "quickstart-by-task.md") if b.lang == "python"]
    assert len(found) == 4 and all(b.not_run is None for b in found)
    for block in found:
        lines = [line for line in block.code.splitlines() if line.strip()]
        assert len(lines) < 20, (block.where, len(lines))
    assert "(docs/quickstart-by-task.md)" in (ROOT / "README.md").read_text()


def test_readme_quotes_cli_output():
    assert any(cmd.path.name == "README.md" for cmd, _ in quoted_cli_outputs())


@pytest.mark.parametrize("pair", quoted_cli_outputs(), ids=lambda p: p[1].where)
def test_quoted_cli_output_is_what_the_command_prints(pair, tmp_path):
    command, quoted = pair
    shutil.copytree(ROOT / "examples" / "pages", tmp_path / "examples" / "pages")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    lines = [line for line in command.code.replace("\\\n", " ").splitlines() if line.strip()]
    out = ""
    for line in lines:
        assert CLI.match(line), f"{command.where}: not a cares command: {line}"
        argv = shlex.split(re.sub(r"\s+#.*$", "", line))
        argv = ["-m", "cares_integrations", *argv[1:]] if argv[0] == "cares" else argv[1:]
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (line, done.stderr)
        out = done.stdout
    got = [line.rstrip() for line in out.rstrip("\n").splitlines()]
    assert got == [line.rstrip() for line in quoted.code.rstrip("\n").splitlines()], quoted.where


# ---------------------------------------------------------------------------------------------
SPEED_FIGURE = re.compile(r"\b\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?\s?(?:ms|s|min|minutes|seconds)\b"
                          r"|\b\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?x (?:faster|slower)|img/s|images/s")
COMMAND = re.compile(r"\bbench_\w+\.py|benchmarks/\w+\.py|python -m cares_integrations|`python |`cares |cares \w+ --")


def sections(text: str) -> list[str]:
    """The text split at markdown headings (``#`` lines inside code blocks are not headings)."""
    masked = FENCE.sub(lambda m: re.sub(r"(?m)^(\s*)#", r"\1;", m.group(0)), text)
    starts = sorted({0, *(m.start() for m in re.finditer(r"(?m)^#+ ", masked))})
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def test_every_speed_figure_names_the_command_that_measured_it():
    """A section of README.md or docs/*.md that quotes a time or a speed-up names the command
    (a benchmark, ``python ...`` or ``cares ...``) that prints it."""
    missing = []
    for path in DOC_FILES:
        for section in sections(path.read_text()):
            figures = [m.group(0) for line in section.splitlines() if "_ms" not in line  # option names
                       for m in SPEED_FIGURE.finditer(line)]
            if figures and not COMMAND.search(section):
                missing.append(f"{_rel(path)}: {section.splitlines()[0]!r}: {figures[:3]}")
    assert not missing, missing


def test_speed_figure_check_can_fail():
    assert SPEED_FIGURE.search("routes a page in about 20-60 ms on a CPU")
    assert not COMMAND.search("## Speed\n\nIt routes a page in 20 ms.\n")
    assert COMMAND.search("measured by `python benchmarks/bench_default_routers.py`")
    assert len(sections("# a\n```bash\n# not a heading\n```\n## b\n")) == 2
