"""HTML loading: code blocks with their language, inline code, admonitions and generator chrome (Sphinx, MkDocs)."""

from __future__ import annotations

from ragcore.loaders import load_bytes

SPHINX_PAGE = """<!DOCTYPE html>
<html><head><title>Quickstart — httpx 0.28</title></head><body>
<div class="related" role="navigation"><ul><li><a href="genindex.html">index</a></li></ul></div>
<div class="body" role="main">
<section id="quickstart"><h1>Quickstart<a class="headerlink" href="#quickstart">¶</a></h1>
<p>First, import <code class="docutils literal notranslate"><span class="pre">httpx</span></code>:</p>
<div class="highlight-pycon notranslate"><div class="highlight"><pre><span></span><span class="gp">&gt;&gt;&gt; </span>import httpx
&gt;&gt;&gt; r = httpx.get(&#39;https://example.org&#39;)

&gt;&gt;&gt; r.status_code
200
</pre></div></div>
<div class="admonition note"><p class="admonition-title">Note</p><p>The default timeout is five seconds.</p></div>
<div class="admonition warning"><p class="admonition-title">Mind the gap</p><p>Careful.</p></div>
<section id="steps"><h2>Steps<a class="headerlink" href="#steps">¶</a></h2>
<ol start="3"><li>three<ul><li>nested</li></ul></li><li>four</li></ol>
<p><img src="flow.png" alt="Request flow"> is drawn above.</p>
<pre><code class="language-python">def f():
    return 1
</code></pre>
</section></section></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of contents</h3><div role="search"><input></div></div>
</body></html>"""


def test_a_sphinx_page_reads_as_the_chunk_text_format() -> None:
    doc = load_bytes(SPHINX_PAGE.encode(), "quickstart.html")
    assert doc.title == "Quickstart — httpx 0.28"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("", ("First, import `httpx`:\n\n"
              "```pycon\n>>> import httpx\n>>> r = httpx.get('https://example.org')\n\n>>> r.status_code\n200\n```\n\n"
              "Note:\nThe default timeout is five seconds.\n\nWarning: Mind the gap\nCareful.")),
        ("§ Steps", "3. three\n  - nested\n4. four\n\nRequest flow is drawn above.\n\n```python\ndef f():\n    return 1\n```"),
    ]  # fmt: skip
    for chrome in ("¶", "index", "Table of contents"):
        assert chrome not in doc.text


def test_pandoc_and_highlightjs_code_classes_give_the_language() -> None:
    page = b'<html><body><pre class="sourceCode rust"><code>fn main() {}</code></pre><pre><code class="lang-go">go f()</code></pre></body></html>'
    assert load_bytes(page, "x.html").text == "```rust\nfn main() {}\n```\n\n```go\ngo f()\n```"


def test_a_heading_only_page_is_its_headings() -> None:
    doc = load_bytes(b"<html><body><h1>Roadmap</h1><h2>Q1</h2><h2>Q2</h2></body></html>", "roadmap.html")
    assert (doc.title, doc.text) == ("Roadmap", "Roadmap\nQ1\nQ2")
