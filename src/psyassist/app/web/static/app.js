// psyassist app: the two live parts of the pages (a draft being written, a chat reply) and htmx glue.
// Everything the model or a person wrote is put into the page with textContent, never as HTML.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// --- a draft being written: /drafts/ID/events (server-sent events) ---------------------------------
function watchDraft(box) {
  const labels = JSON.parse(document.getElementById("stream-labels").textContent);
  const out = document.getElementById("stream-box");
  const count = document.getElementById("stream-count");
  const ctx = document.getElementById("stream-context");
  const es = new EventSource(box.dataset.events);
  let ended = false;
  function render(content) {
    out.replaceChildren();
    for (const sec of labels.sections) {
      const items = (content.sections[sec.key] || []).filter((i) => i.text);
      if (!items.length) continue;
      out.append(el("div", "section-title", sec.title));
      const ol = el(sec.kind === "list" ? "ol" : "div", sec.kind === "list" ? "items" : "pre");
      for (const it of items) ol.append(el(sec.kind === "list" ? "li" : "div", "item-text", it.text));
      out.append(ol);
    }
    const basic = labels.basic.filter(([k]) => content.basic_info[k]);
    if (basic.length) {
      out.append(el("div", "section-title", labels.basic_title));
      for (const [k, label] of basic) out.append(el("div", "small", label + ": " + content.basic_info[k].text));
    }
  }
  es.addEventListener("message", (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "context") {
      ctx.textContent = labels.context
        .replace("{whole}", ev.whole.length).replace("{summarized}", ev.summarized.length).replace("{dropped}", ev.dropped.length);
    } else if (ev.type === "partial") {
      render(ev.content);
      count.textContent = labels.items.replace("{n}", ev.shown);
    } else if (ev.type === "done" || ev.type === "error" || ev.type === "gone") {
      ended = true;
      es.close();
      window.location.replace(box.dataset.reload);
    }
  });
  es.addEventListener("error", () => {
    // The server restarted or the stream ended: the page as stored is the truth.
    if (!ended) { es.close(); setTimeout(() => window.location.replace(box.dataset.reload), 1500); }
  });
}

// --- chat: send with fetch, stream the reply, then reload (banners and the stored history) ----------
function watchReply(chatId, replyId, target) {
  const es = new EventSource(`/chats/${chatId}/replies/${replyId}/events`);
  es.addEventListener("message", (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type === "delta") target.textContent = ev.text;
    if (ev.type === "done" || ev.type === "error" || ev.type === "gone") { es.close(); window.location.reload(); }
  });
  es.addEventListener("error", () => { es.close(); setTimeout(() => window.location.reload(), 1500); });
}

function chatForm(form) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const text = form.querySelector("textarea").value;
    if (!text.trim()) return;
    button.disabled = true;
    const resp = await fetch(form.action, {
      method: "POST", body: new FormData(form),
      headers: { "Accept": "application/json", "X-CSRF-Token": form.querySelector("[name=csrf_token]").value },
    });
    if (!resp.ok) { button.disabled = false; const t = document.getElementById("toast"); t.textContent = (await resp.json()).error || resp.statusText; return; }
    const data = await resp.json();
    const log = document.getElementById("chatlog");
    log.append(el("div", "msg user", text));
    const reply = el("div", "msg assistant cursor", "");
    log.append(reply);
    form.querySelector("textarea").value = "";
    if (data.alerts_html !== undefined) {
      // Server-rendered (escaped) banner markup: the crisis banner shows before the reply arrives.
      document.getElementById("alerts").outerHTML = data.alerts_html;
    }
    watchReply(form.dataset.chat, data.reply_id, reply);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("stream");
  if (box) watchDraft(box);
  const form = document.getElementById("chat-form");
  if (form) {
    chatForm(form);
    const pending = document.querySelector("[data-reply]");
    if (pending) watchReply(form.dataset.chat, pending.dataset.reply, pending.parentElement);
  }
  // A long upload: say that it is working (a book takes about a minute to read and index).
  for (const f of document.querySelectorAll("form[data-working]")) {
    f.addEventListener("submit", () => {
      const b = f.querySelector("button[type=submit]");
      if (b) b.disabled = true;
      const w = f.querySelector(".working");
      if (w) w.textContent = f.dataset.working;
    });
  }
  // htmx: a failed request shows the server's message instead of silently doing nothing.
  document.body.addEventListener("htmx:responseError", (e) => {
    const t = document.getElementById("toast");
    t.replaceChildren(el("div", "errorbox", e.detail.xhr.getResponseHeader("X-Error") ? decodeURIComponent(e.detail.xhr.getResponseHeader("X-Error")) : e.detail.xhr.statusText));
    setTimeout(() => t.replaceChildren(), 8000);
  });
});
