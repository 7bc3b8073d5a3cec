"""Per-client adapters in headless Chromium against a real `psyassist app` with the default model: save three
notes with edits, Train, watch the card's progress, the next draft says "adapter v1" in its provenance;
delete v1 and the next draft is the base model's again.

    PSYASSIST_SCREENSHOTS=/tmp/shots pytest -m slow tests/test_app_browser_training.py   # ~3.5 min on 2 CPU cores

The app's own worker thread (workers: 1) trains in the server process.  Two steps, not one: the card
shows "step 1/2 · loss · tok/s · ETA" only while a step is left, and the heartbeat (every 5 s) must catch it.
The pages run under a strict CSP, so the test waits with locators and `expect`, never evaluated JavaScript.
"""

from __future__ import annotations

import re
import time

import pytest

from app_helpers import Server, prepare_accounts, serving, sign_in

pytestmark = pytest.mark.slow

# As in test_app_browser.py: short drafts (SmolLM2-135M writes ~1-2 tokens/s on 2 busy cores; a cut draft is
# closed and kept) and one torch thread (two spin against each other on 2 cores).
ENV = {"PSYASSIST_APP_DRAFT_MAX_TOKENS": "96", "OMP_NUM_THREADS": "1", "PSYASSIST_APP_TRAIN_STEPS": "2"}








def new_draft(page, base: str, cid: str, text: str, mode: str, day: str) -> str:
    """A session from the client page ("analysis": the model drafts; "blank": written by hand); waits for the
    editor and returns the draft's id."""
    from playwright.sync_api import expect

    page.goto(f"{base}/clients/{cid}")
    page.locator("#session_date").fill(day)
    page.locator("#input").fill(text)
    page.locator(f"button[name=mode][value={mode}]").click()
    page.wait_for_url(re.compile(r"/drafts/\w+$"))
    page.wait_for_selector("#draft-body", timeout=300_000)
    expect(page.get_by_role("button", name="Save to notes")).to_be_visible()
    return page.url.rsplit("/", 1)[1]


def edit_first_item_and_save(page, cid: str, text: str) -> None:
    from playwright.sync_api import expect

    first = page.locator("#" + page.locator("#draft-body .draft-item").first.get_attribute("id"))
    first.locator("summary", has_text="Edit").click()
    first.get_by_label("Edit").fill(text)
    first.get_by_role("button", name="Save", exact=True).click()
    expect(first.locator(".item-text")).to_have_text(text)
    page.get_by_role("button", name="Save to notes").click()
    page.wait_for_url(re.compile(rf"/clients/{cid}\?notice=note_saved"))


def provenance_adapter(page, base: str, did: str):
    """The draft's provenance as the page shows it (opened) and its `adapter` field from the API."""
    page.get_by_text("Where this draft came from").click()
    page.locator("dl.kv").wait_for()
    return page.request.get(f"{base}/api/v1/drafts/{did}").json()["provenance"]["adapter"]


def test_train_watch_draft_with_v1_delete_it_and_draft_with_the_base_model(tmp_path, page, shots):
    from playwright.sync_api import expect

    data = tmp_path / "data"
    prepare_accounts(data, users=("alice",))
    page.set_default_timeout(60_000)  # a busy 2-core machine that is also training: clicks can take a while
    expect.set_options(timeout=60_000)  # expect()'s own default is 5 s, not the page's: the same allowance
    with serving(Server(data, with_model=True, env=ENV)) as server:
        base = server.url
        sign_in(page, base, "alice")
        page.locator("#new-name").fill("Lin S.")
        page.get_by_role("button", name="Create").click()
        page.wait_for_url(re.compile(r"/clients/\w+\?notice=client_created"))
        cid = re.search(r"/clients/(\w+)", page.url).group(1)
        card = page.locator("#training")
        expect(card).to_contain_text("Drafts use: the base model")
        expect(card.get_by_role("button", name="Train")).to_be_disabled()  # nothing to learn from yet
        shots(page, "card-no-notes")

        # Three saved sessions with the counselor's edits: one drafted by the model, two written by hand
        # (with their session input, so they are training examples too).
        did = new_draft(page, base, cid, "Lin, 19, retaking the exam. Sleeps 4 hours, fears failing again.",
                        "analysis", "2026-03-02")
        assert provenance_adapter(page, base, did) is None
        shots(page, "draft-1-base-model")
        edit_first_item_and_save(page, cid, "How to sleep and study before the retake without panicking.")
        for i, (text, edit) in enumerate([
                ("Slept 5 hours this week; parents still push for top marks.", "Negotiating expectations with parents."),
                ("Mock exam went well; worry time in the evening helps.", "Keeping the evening worry time.")]):
            new_draft(page, base, cid, text, "blank", f"2026-03-{9 + 7 * i:02d}")
            edit_first_item_and_save(page, cid, edit)
        expect(page.locator("details.note")).to_have_count(3)
        expect(card.get_by_role("button", name="Train")).to_be_enabled()
        shots(page, "card-ready-to-train")

        # Train, then watch the card: htmx replaces it every 2 s; the page itself never reloads (the text
        # typed into the session input stays).
        card.get_by_role("button", name="Train").click()
        page.wait_for_url(re.compile(r"notice=training_queued"))
        url = page.url
        page.locator("#input").fill("typed while it trains")
        status = card.locator("[role=status]")
        seen: list[str] = []
        deadline = time.monotonic() + 900
        while not (seen and seen[-1].startswith(("Trained", "Training failed", "Cancelled"))):
            assert time.monotonic() < deadline, f"no end of training in 900 s; the card showed {seen}"
            text = " ".join(status.inner_text().split())
            if not seen or text != seen[-1]:
                seen.append(text)
                shots(page, f"training-{len(seen)}")
            time.sleep(0.5)
        assert seen[-1].startswith("Trained · v1"), seen
        assert any(s.startswith("Training · ") for s in seen), seen
        # A step's figures reach the card through the worker's heartbeat (every 5 s): steps of ~10 s or more
        # (every CPU run here: 20-50 s) are surely shown; a machine that trains both steps in seconds may skip them.
        (v1,) = page.request.get(f"{base}/api/v1/clients/{cid}/adapters").json()["adapters"]
        if v1["manifest"]["train_seconds"] > 20:
            assert any(re.search(r"^Training · .*step [12]/2 · loss [\d.]+ · [\d.]+ tok/s · ETA \d+ s", s)
                       for s in seen), seen
        assert page.url == url and page.locator("#input").input_value() == "typed while it trains"
        expect(card).to_contain_text("Drafts use: v1")
        expect(card.locator(".versions li")).to_have_count(1)
        expect(card.locator(".versions li")).to_contain_text("3 note(s) · 2 steps")
        shots(page, "trained-v1")

        # The next draft uses v1 and says so.
        did = new_draft(page, base, cid, "Exam in two weeks; sleeping 6 hours.", "analysis", "2026-03-30")
        adapter = provenance_adapter(page, base, did)
        assert adapter is not None and adapter["version"] == 1 and "error" not in adapter, adapter
        expect(page.locator("dl.kv dt", has_text=re.compile(r"^adapter$"))).to_have_count(1)
        expect(page.locator("dl.kv dd", has_text=re.compile(r"^v1 · sft$"))).to_have_count(1)  # not a raw dict
        shots(page, "draft-2-adapter-v1")

        # Delete v1: the card falls back to the base model, and so does the next draft.
        page.goto(f"{base}/clients/{cid}")
        card.get_by_role("button", name=re.compile("Delete")).click()
        page.wait_for_url(re.compile(r"notice=adapter_saved"))
        expect(card).to_contain_text("Drafts use: the base model")
        expect(card.locator(".versions li")).to_have_count(0)
        shots(page, "v1-deleted")
        did = new_draft(page, base, cid, "Exam in one week; sleeping 6 hours.", "analysis", "2026-04-06")
        assert provenance_adapter(page, base, did) is None
        expect(page.locator("dl.kv dd", has_text=re.compile(r"^the base model$"))).to_have_count(1)
        shots(page, "draft-3-base-model")
