/* Safe Markdown for chat answers: everything is escaped first, then a small subset is applied
   (paragraphs, headings, **bold**, *italic*, `code`, fenced code, lists, rules, [n] citation
   markers, and links whose address is http or https). No raw HTML ever reaches the page. */
(function (global) {
  "use strict";

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  // Inline formatting of one already-escaped line. Code spans are set aside first so nothing
  // inside them is formatted; \u0000 cannot occur in the text (render strips it).
  function inline(escaped, opts) {
    var stash = [];
    var out = escaped.replace(/`([^`]+)`/g, function (_, code) {
      stash.push("<code>" + code + "</code>");
      return "\u0000" + (stash.length - 1) + "\u0000";
    });
    out = out.replace(/\[([^\]\u0000]+)\]\((https?:\/\/[^\s()\u0000]+)\)/g, function (_, label, href) {
      stash.push('<a href="' + href + '" target="_blank" rel="noopener noreferrer nofollow">' + label + "</a>");
      return "\u0000" + (stash.length - 1) + "\u0000";
    });
    out = out.replace(/\*\*([^*]+?)\*\*/g, "<strong>$1</strong>");
    out = out.replace(/(^|[^*\w])\*(?!\s)([^*]+?)\*(?!\w)/g, "$1<em>$2</em>");
    out = out.replace(/(^|[^_\w])_(?!\s)([^_]+?)_(?!\w)/g, "$1<em>$2</em>");
    out = out.replace(/\[(\d{1,3})\]/g, function (_, n) {
      var prefix = opts && opts.citePrefix;
      if (!prefix) return '<sup class="cite">[' + n + "]</sup>";
      return '<a class="cite" href="#' + prefix + n + '" data-n="' + n + '">[' + n + "]</a>";
    });
    return out.replace(/\u0000(\d+)\u0000/g, function (_, i) { return stash[Number(i)]; });
  }

  function render(source, opts) {
    var lines = String(source || "").replace(/\u0000/g, "").replace(/\r\n?/g, "\n").split("\n");
    var html = [];
    var para = [];
    var list = null; // {tag: "ul"|"ol", items: []}

    function flushPara() {
      if (para.length) html.push("<p>" + para.map(function (l) { return inline(escapeHtml(l), opts); }).join("<br>") + "</p>");
      para = [];
    }
    function flushList() {
      if (list) {
        html.push("<" + list.tag + ">" + list.items.map(function (i) { return "<li>" + inline(escapeHtml(i), opts) + "</li>"; }).join("") + "</" + list.tag + ">");
      }
      list = null;
    }

    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      var fence = /^\s*```/.test(line);
      if (fence) {
        flushPara(); flushList();
        var code = [];
        for (i = i + 1; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
        html.push("<pre><code>" + escapeHtml(code.join("\n")) + "</code></pre>");
        continue;
      }
      if (!line.trim()) { flushPara(); flushList(); continue; }
      if (/^\s*(-{3,}|\*{3,})\s*$/.test(line)) { flushPara(); flushList(); html.push("<hr>"); continue; }
      var heading = /^(#{1,4})\s+(.*)$/.exec(line);
      if (heading) {
        flushPara(); flushList();
        var level = Math.min(heading[1].length + 2, 6);
        html.push("<h" + level + ">" + inline(escapeHtml(heading[2]), opts) + "</h" + level + ">");
        continue;
      }
      var bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
      var numbered = /^\s*\d{1,3}[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        flushPara();
        var tag = bullet ? "ul" : "ol";
        if (!list || list.tag !== tag) { flushList(); list = { tag: tag, items: [] }; }
        list.items.push((bullet || numbered)[1]);
        continue;
      }
      if (list && /^\s{2,}\S/.test(line)) { list.items[list.items.length - 1] += " " + line.trim(); continue; }
      flushList();
      para.push(line);
    }
    flushPara(); flushList();
    return html.join("");
  }

  global.LorebotMarkdown = { render: render, escapeHtml: escapeHtml };
})(window);
