"""reStructuredText loading through docutils: code, admonitions, Sphinx roles and directives, tables, safety."""

from __future__ import annotations

import textwrap

from ragcore.loaders import load_bytes
from ragcore.types import ParsedDocument


def rst(source: str, name: str = "page.rst") -> ParsedDocument:
    return load_bytes(textwrap.dedent(source).encode(), name)


def test_code_blocks_keep_their_language_and_literal_blocks_are_fenced() -> None:
    doc = rst("""\
        Run it::

            make test

        .. code-block:: python

           def f():

               return 1

        >>> f()
        1
        """)
    assert doc.text == "Run it:\n\n```\nmake test\n```\n\n```python\ndef f():\n\n    return 1\n```\n\n```pycon\n>>> f()\n1\n```"


def test_admonitions_become_a_titled_line_and_their_body() -> None:
    doc = rst("""\
        .. note:: The default timeout is five seconds.

        .. warning::

           Never disable ``verify``.

           Really.

        .. admonition:: Mind the gap

           Between the train and the platform.
        """)
    assert doc.text == (
        "Note:\nThe default timeout is five seconds.\n\n"
        "Warning:\nNever disable `verify`.\n\nReally.\n\n"
        "Mind the gap:\nBetween the train and the platform."
    )


def test_sphinx_roles_read_as_their_text() -> None:
    doc = rst("Call :func:`~httpx.get` or :meth:`Client.send`, see :ref:`the guide <guide>` and :doc:`api`, or :foo:`bar`.")
    assert doc.text == "Call `get` or `Client.send`, see the guide and api, or bar."


def test_sphinx_directives_keep_what_a_reader_can_quote() -> None:
    doc = rst("""\
        .. toctree::
           :maxdepth: 2

           quickstart

        .. automodule:: httpx

        .. function:: get(url, *, timeout=5.0)

           Sends a GET request.

           :param url: where to send it
           :returns: a response

        .. versionadded:: 0.18 The *timeout* argument.

        .. deprecated:: 0.20
           Use ``Client`` instead.

        .. seealso:: :mod:`urllib`
        """)
    assert doc.text == (
        "`get(url, *, timeout=5.0)`\n\nSends a GET request.\n\nparam url: where to send it\nreturns: a response\n\n"
        "New in version 0.18:\nThe timeout argument.\n\n"
        "Deprecated since version 0.20:\nUse `Client` instead.\n\n"
        "See also:\n`urllib`"
    )
    assert "toctree" not in doc.text and "quickstart" not in doc.text and "automodule" not in doc.text


def test_tables_and_lists_keep_their_rows_and_items() -> None:
    doc = rst("""\
        +---------+---------+
        | Setting | Default |
        +=========+=========+
        | timeout | 5       |
        +---------+---------+

        - one
        - two

          - nested

        #. first
        #. second
        """)
    assert doc.text == "Setting | Default\ntimeout | 5\n\n- one\n- two\n  - nested\n\n1. first\n2. second"


def test_sections_give_locations_and_the_lone_top_title_names_the_document() -> None:
    doc = rst("""\
        =====
        Guide
        =====

        Intro.

        Install
        -------

        Steps.

        Linux
        ~~~~~

        apt.
        """)
    assert doc.title == "Guide"
    assert [(s.location, s.text) for s in doc.sections] == [("", "Intro."), ("§ Install", "Steps."), ("§ Install › Linux", "apt.")]


def test_it_never_reads_other_files_or_passes_raw_html_through() -> None:
    doc = rst("""\
        Before.

        .. include:: /etc/hostname

        .. raw:: html

           <script>alert(1)</script>

        .. |secret| date::

        After.
        """)
    assert doc.text == "Before.\n\nAfter."


def test_a_heading_only_document_is_its_headings() -> None:
    doc = rst("Roadmap\n=======\n\nQ1\n--\n\nQ2\n--\n")
    assert (doc.title, doc.text) == ("Roadmap", "Q1\nQ2")
    assert rst("Just a title\n============\n").text == "Just a title"
