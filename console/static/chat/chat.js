/* The web chat: one WebSocket to /ws/chat/ speaking the protocol in the README ("Web chat: the /ws/chat/ WebSocket protocol").
   The conversation lives on the server; after a reload or a dropped connection the page asks for
   it again ("history") and redraws it, so nothing here needs to survive. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("chat-config").textContent);
  var md = window.LorebotMarkdown;
  var $ = function (id) { return document.getElementById(id); };
  var messagesEl = $("messages"), form = $("composer"), input = $("question");
  var sendBtn = $("send"), stopBtn = $("stop"), statusEl = $("status"), titleEl = $("conversation-title");
  var listEl = $("conversation-list"), emptyEl = $("sidebar-empty");

  var THUMB = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M2 21h3V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 ' +
    '6.6 7.6C6.2 7.9 6 8.4 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z"/></svg>';
  var socket = null;
  var retries = 0;
  var retryTimer = null;
  var closedForGood = false;
  var conversationId = initialConversation();
  var answer = null;       // the answer being streamed: {el, body, text, messageId}
  var pendingPoll = null;  // re-asks history while an answer from an earlier socket is unfinished
  var queued = null;       // a question typed while disconnected, sent on reconnect

  // -- the socket -----------------------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    setStatus("connecting", retries ? "Reconnecting…" : "Connecting…");
    socket = new WebSocket(scheme + location.host + config.socket_path);
    socket.onopen = function () {
      retries = 0;
      setStatus("online", "Connected");
      send({ type: "conversations" });
      if (conversationId) send({ type: "history", conversation_id: conversationId });
      if (queued) { var q = queued; queued = null; ask(q); }
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      var handler = handlers[frame.type];
      if (handler) handler(frame);
    };
    socket.onclose = function (event) {
      if (answer) interruptAnswer("The connection dropped; reconnecting…");
      setAnswering(false);
      if (event.code === 4401) {
        closedForGood = true;
        setStatus("offline", "Logged out");
        notice('Your session has ended. <a href="' + md.escapeHtml(config.login_url) + "?next=" + encodeURIComponent(location.pathname + location.search) + '">Log in again</a>.', true);
        return;
      }
      if (closedForGood) return;
      // Exponential backoff with jitter, so a restarted server is not hit by every tab at once.
      var delay = Math.min(15000, 500 * Math.pow(2, retries)) * (0.75 + Math.random() * 0.5);
      retries += 1;
      setStatus("offline", "Offline — retrying in " + Math.ceil(delay / 1000) + " s");
      retryTimer = setTimeout(connect, delay);
    };
  }

  function send(frame) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(frame)); return true; }
    return false;
  }

  var handlers = {
    start: function (f) {
      var isNew = conversationId !== f.conversation_id;
      conversationId = f.conversation_id;
      rememberConversation();
      if (answer) answer.messageId = f.message_id;
      if (isNew) send({ type: "conversations" });
    },
    token: function (f) {
      if (!answer) return;
      answer.text += f.text;
      scheduleRender();
    },
    citations: function (f) { if (answer) answer.citations = f.items || []; },
    done: function (f) {
      if (!answer) return;
      answer.messageId = f.message_id;
      finishAnswer(answer, f.extractive, false, f.not_covered);
    },
    cancelled: function () {
      if (answer) { answer.stopped = true; finishAnswer(answer, false); }
    },
    error: function (f) {
      if (answer && f.fatal === false) {  // the model failed mid-answer; an extractive answer follows
        answer.notes.push(f.message || "The language model stopped mid-answer.");
        scheduleRender();
        return;
      }
      if (f.code === "unauthenticated") return;  // the close frame (4401) follows
      var text = f.message || "Something went wrong.";
      if (answer && !answer.messageId) {  // refused before it started: put the question back
        answer.el.remove();
        if (answer.questionEl) answer.questionEl.remove();
        input.value = answer.question;
        answer = null;
        setAnswering(false);
      } else if (answer) {
        answer.notes.push(text);
        finishAnswer(answer, false);
      }
      if (f.code === "forbidden" || f.code === "not_found") { conversationId = null; rememberConversation(); clearMessages(); }
      notice(md.escapeHtml(text), false);
    },
    history: function (f) {
      if (answer) return;  // never redraw under an answer that is streaming
      conversationId = f.conversation_id;
      rememberConversation();
      clearMessages();
      titleEl.textContent = f.title || "Conversation";
      var pending = false;
      f.messages.forEach(function (m) {
        if (m.role === "user") { addQuestion(m.text); return; }
        var a = newAnswer();
        a.messageId = m.id;
        a.text = m.text;
        a.citations = m.citations;
        a.feedback = m.feedback;
        if (m.pending) {  // answered by a socket that went away; the server finishes it
          pending = true;
          a.notes.push("Still answering…");
          renderAnswer(a);
          return;
        }
        if (m.error && m.error !== "in_progress" && (!m.text || m.error === "interrupted")) a.notes.push(errorText(m.error));
        else if (m.error === "cancelled") a.stopped = true;
        finishAnswer(a, m.extractive, true, m.not_covered);
      });
      highlightConversation();
      scrollDown(true);
      clearTimeout(pendingPoll);
      if (pending) pendingPoll = setTimeout(function () { send({ type: "history", conversation_id: conversationId }); }, 1500);
    },
    conversations: function (f) {
      listEl.innerHTML = "";
      emptyEl.hidden = f.items.length > 0;
      f.items.forEach(function (c) {
        var li = document.createElement("li");
        var b = document.createElement("button");
        b.type = "button";
        b.className = "conversation";
        b.dataset.id = c.id;
        b.textContent = c.title;
        b.title = c.title;
        b.addEventListener("click", function () { openConversation(c.id); });
        li.appendChild(b);
        listEl.appendChild(li);
      });
      highlightConversation();
    },
    link_code: function (f) {
      // A one-time code for the Slack or Discord bot (console/chat/links.py); shown once, never stored here.
      var panel = $("link-panel");
      if (!panel) return;
      $("link-code").textContent = f.code;
      panel.querySelectorAll("[data-code]").forEach(function (el) { el.textContent = f.code; });
      var until = new Date(f.expires_at);
      $("link-expiry").textContent = "It works once, until " + until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
        " (" + f.minutes + " minutes).";
      var names = { slack: "Slack", discord: "Discord" };
      $("link-linked").textContent = f.linked && f.linked.length ?
        "Already linked: " + f.linked.map(function (p) { return names[p] || p; }).join(", ") + "." : "";
      panel.hidden = false;
      $("link-account").setAttribute("aria-expanded", "true");
    },
    feedback: function (f) {
      var el = messagesEl.querySelector('[data-message-id="' + Number(f.message_id) + '"]');
      if (el) markVote(el, f.value);
    },
  };

  // -- asking ---------------------------------------------------------------------------

  function ask(text) {
    if (answer) return;
    var frame = { type: "ask", text: text };
    if (conversationId) frame.conversation_id = conversationId;
    if (!send(frame)) { queued = text; notice("Offline: your question will be sent when the connection is back.", false); return; }
    $("welcome") && $("welcome").remove();
    var q = addQuestion(text);
    answer = newAnswer();
    answer.question = text;
    answer.questionEl = q;
    answer.notes = [];
    renderAnswer(answer);
    setAnswering(true);
    scrollDown(true);
  }

  function newAnswer() {
    var el = document.createElement("article");
    el.className = "msg assistant streaming";
    var body = document.createElement("div");
    body.className = "body";
    el.appendChild(body);
    messagesEl.appendChild(el);
    return { el: el, body: body, text: "", citations: [], notes: [], messageId: null, feedback: null };
  }

  function addQuestion(text) {
    $("welcome") && $("welcome").remove();
    var el = document.createElement("article");
    el.className = "msg user";
    var body = document.createElement("div");
    body.className = "body";
    body.textContent = text;  // the user's own words are shown as typed, never as markup
    el.appendChild(body);
    messagesEl.appendChild(el);
    return el;
  }

  var renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(function () {
      renderQueued = false;
      if (answer) { renderAnswer(answer); scrollDown(false); }
    });
  }

  function renderAnswer(a) {
    var prefix = a.messageId ? "cite-" + a.messageId + "-" : "";
    var html = md.render(a.text, { citePrefix: prefix });
    if (!a.text && !a.notes.length) html = '<p class="typing" aria-label="Answering"><span></span><span></span><span></span></p>';
    a.body.innerHTML = a.notes.map(function (n) { return '<p class="note">' + md.escapeHtml(n) + "</p>"; }).join("") + html;
  }

  function finishAnswer(a, extractive, fromHistory, notCovered) {
    a.el.classList.remove("streaming");
    // The documents do not answer it (Lorebot declined, or the model said so): marked, with a label.
    if (notCovered) { a.el.classList.add("not-covered"); a.el.dataset.label = "Not covered by your documents"; }
    if (a.messageId) a.el.dataset.messageId = a.messageId;
    if (a.stopped) a.notes.push("Stopped.");
    renderAnswer(a);
    if (extractive) a.el.classList.add("extractive");
    if (a.citations && a.citations.length) a.el.appendChild(citationList(a));
    if (a.messageId && a.text) a.el.appendChild(feedbackBar(a));
    if (!fromHistory) { answer = null; setAnswering(false); scrollDown(false); }
  }

  function interruptAnswer(text) {
    answer.notes.push(text);
    renderAnswer(answer);
    answer.el.classList.remove("streaming");
    answer = null;
  }

  function citationList(a) {
    var ol = document.createElement("ol");
    ol.className = "citations";
    a.citations.forEach(function (c) {
      var li = document.createElement("li");
      li.id = "cite-" + a.messageId + "-" + c.n;
      var n = document.createElement("span");
      n.className = "n";
      n.textContent = c.n;
      li.appendChild(n);
      var name = c.title || c.source || c.document_id;
      var href = sourceHref(c);
      var label;
      if (href) {
        label = document.createElement("a");
        label.href = href;
        label.target = "_blank";
        label.rel = "noopener noreferrer";
      } else {
        label = document.createElement("span");
      }
      label.className = "source";
      label.textContent = name;
      li.appendChild(label);
      if (c.location) {
        var loc = document.createElement("span");
        loc.className = "location";
        loc.textContent = c.location;
        li.appendChild(loc);
      }
      if (c.synced) {  // a synced document: when a sync last found it at its origin
        var synced = document.createElement("span");
        synced.className = "synced";
        synced.textContent = c.synced;
        li.appendChild(synced);
      }
      if (c.snippet) li.title = c.snippet;
      ol.appendChild(li);
    });
    return ol;
  }

  // The server gives each citation its address (the source viewer, scrolled to the passage, or a web
  // source's own page); nothing but a same-site path or http(s) ever becomes a link.
  function sourceHref(c) {
    var url = c.url || "";
    if (/^\/(?!\/)/.test(url) || /^https?:\/\//i.test(url)) return url;
    return "";
  }

  function feedbackBar(a) {
    var bar = document.createElement("div");
    bar.className = "feedback";
    [[1, "Helpful"], [-1, "Not helpful"]].forEach(function (v) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "vote";
      b.dataset.value = v[0];
      b.innerHTML = THUMB;  // an icon rather than 👍/👎, which some systems lack a font for
      if (v[0] < 0) b.classList.add("down");
      b.title = v[1];
      b.setAttribute("aria-label", v[1]);
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () { send({ type: "feedback", message_id: a.messageId, value: v[0] }); });
      bar.appendChild(b);
    });
    if (a.feedback) markVote(a.el, a.feedback, bar);
    return bar;
  }

  function markVote(el, value, bar) {
    (bar || el).querySelectorAll(".vote").forEach(function (b) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.value) === value));
    });
  }

  // -- conversations --------------------------------------------------------------------

  function openConversation(id) {
    if (answer) return;
    conversationId = id;
    rememberConversation();
    closeSidebar();
    send({ type: "history", conversation_id: id });
  }

  function newConversation() {
    if (answer) return;
    conversationId = null;
    rememberConversation();
    clearMessages();
    titleEl.textContent = "New chat";
    highlightConversation();
    closeSidebar();
    input.focus();
  }

  function clearMessages() { messagesEl.innerHTML = ""; }

  function highlightConversation() {
    listEl.querySelectorAll(".conversation").forEach(function (b) {
      var current = Number(b.dataset.id) === conversationId;
      b.classList.toggle("current", current);
      if (current) { b.setAttribute("aria-current", "page"); titleEl.textContent = b.textContent; } else b.removeAttribute("aria-current");
    });
  }

  function initialConversation() {
    var id = Number(new URLSearchParams(location.search).get("c"));
    return id > 0 ? id : null;
  }

  function rememberConversation() {
    var url = new URL(location.href);
    if (conversationId) url.searchParams.set("c", conversationId); else url.searchParams.delete("c");
    history.replaceState(null, "", url.pathname + url.search);
  }

  // -- page bits ------------------------------------------------------------------------

  function setAnswering(on) {
    sendBtn.hidden = on;
    stopBtn.hidden = !on;
    if (on) stopBtn.focus({ preventScroll: true }); else input.focus({ preventScroll: true });
  }

  function setStatus(state, text) { statusEl.dataset.state = state; statusEl.textContent = text; }

  function notice(html, sticky) {
    var el = document.createElement("div");
    el.className = "notice";
    el.innerHTML = html;  // callers pass escaped text or markup they built themselves
    messagesEl.appendChild(el);
    scrollDown(true);
    if (!sticky) setTimeout(function () { el.remove(); }, 8000);
  }

  function errorText(code) {
    return { cancelled: "Stopped.", client_disconnected: "The connection dropped before the answer finished.",
             interrupted: "The server stopped before this answer finished; ask again." }[code] || "This answer did not finish (" + code + ").";
  }

  function scrollDown(force) {
    var near = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 160;
    if (force || near) messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 200) + "px";
  }

  function openSidebar() { document.body.classList.add("sidebar-open"); $("scrim").hidden = false; $("menu").setAttribute("aria-expanded", "true"); }
  function closeSidebar() { document.body.classList.remove("sidebar-open"); $("scrim").hidden = true; $("menu").setAttribute("aria-expanded", "false"); }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || answer) return;
    input.value = "";
    autosize();
    ask(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  input.addEventListener("input", autosize);
  stopBtn.addEventListener("click", function () { send({ type: "cancel" }); });
  $("new-chat").addEventListener("click", newConversation);
  $("menu").addEventListener("click", function () { document.body.classList.contains("sidebar-open") ? closeSidebar() : openSidebar(); });
  $("scrim").addEventListener("click", closeSidebar);
  messagesEl.addEventListener("click", function (e) {
    var cite = e.target.closest("a.cite");
    if (!cite) return;
    e.preventDefault();
    var target = document.getElementById(cite.getAttribute("href").slice(1));
    if (!target) return;
    target.scrollIntoView({ block: "nearest", behavior: "smooth" });
    target.classList.remove("flash");
    void target.offsetWidth;  // restart the highlight animation
    target.classList.add("flash");
  });

  if ($("link-account")) {
    $("link-account").addEventListener("click", function () {
      if (!send({ type: "link_code" })) notice("Not connected; try again in a moment.", false);
    });
    $("link-close").addEventListener("click", function () {
      $("link-panel").hidden = true;
      $("link-code").textContent = "········";  // the code leaves the page once it is no longer needed
      $("link-account").setAttribute("aria-expanded", "false");
    });
  }

  connect();
  input.focus();
})();
