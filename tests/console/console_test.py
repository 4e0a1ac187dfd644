"""The operator console in a real browser (Debian's Chromium driven by Playwright) against a
real `vigil serve` with the real models on the CPU. Run by scripts/console-tests, which starts
the server; writes a screenshot of every screen to VIGIL_SHOTS.

Environment: VIGIL_URL, VIGIL_KEY (an admin key), VIGIL_MEDIA (the test media folder),
VIGIL_SHOTS (where screenshots go), VIGIL_CHROMIUM (the browser binary).
"""

import json
import os
import pathlib
import sys
import time

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

BASE = os.environ["VIGIL_URL"].rstrip("/")
KEY = os.environ["VIGIL_KEY"]
MEDIA = pathlib.Path(os.environ["VIGIL_MEDIA"])
SHOTS = pathlib.Path(os.environ["VIGIL_SHOTS"])
CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
ASTRONAUT = MEDIA / "astronaut.png"
CLIP = MEDIA / "vtest.avi"
# Models on a 2-core CPU: an incident can take a minute or two.
SLOW = 240_000
WALKWAY = [{"x": 0, "y": 0.55}, {"x": 1, "y": 0.55}, {"x": 1, "y": 1}, {"x": 0, "y": 1}]

axe = Axe()
accessibility = {}
outside = []


def log(message):
    print(f"console-tests: {message}", flush=True)


def check(page, screen):
    """Screenshot and accessibility check of the screen on display."""
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"{screen}.jpg"), full_page=True, type="jpeg", quality=75)
    results = axe.run(page)
    serious = [
        v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")
    ]
    accessibility[screen] = len(results.response["violations"])
    assert not serious, f"{screen}: serious accessibility violations:\n" + json.dumps(
        [{"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"][:3]]} for v in serious],
        indent=2,
    )


def watch_requests(page):
    """Every request and WebSocket of the page goes to the Vigil server (or is local)."""

    def request(req):
        if not (req.url.startswith(BASE + "/") or req.url.startswith(("blob:", "data:"))):
            outside.append(req.url)

    def websocket(ws):
        if not ws.url.startswith(BASE.replace("http", "ws", 1) + "/"):
            outside.append(ws.url)

    page.on("request", request)
    page.on("websocket", websocket)


def loaded(page, selector, timeout=30_000):
    """Waits until the image at `selector` has decoded pixels."""
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=timeout,
    )


def sign_in(page, key):
    page.goto(BASE + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).to_contain_text("key ")


def ok(response, what):
    assert response.ok, f"{what}: {response.status} {response.text()}"
    return response.json() if response.status != 204 else None


def main():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        api = p.request.new_context(base_url=BASE, extra_http_headers={"X-API-Key": KEY})
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        watch_requests(page)

        # The first visit: the sign-in form, and how fast the page loads.
        page.goto(BASE + "/")
        expect(page.get_by_label("API key")).to_be_visible()
        load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        check(page, "sign-in")

        # A wrong key is refused with the API's message.
        page.get_by_label("API key").fill("vgl_nope_nope")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(".sign-in .error")).to_contain_text("not valid")
        stored = page.evaluate("sessionStorage.getItem('vigil.key')")
        assert stored is None, "a refused key stays in session storage"

        sign_in(page, KEY)
        assert page.evaluate("sessionStorage.getItem('vigil.key')") == KEY
        assert KEY not in page.url, "the key is in the URL"

        # Cameras: add one that streams the pedestrian clip, test its source, see its snapshot.
        expect(page.get_by_role("heading", name="Cameras")).to_be_visible()
        page.get_by_role("button", name="Add camera").click()
        page.get_by_label("Camera id").fill("plaza")
        page.get_by_label("Name", exact=True).fill("Plaza")
        page.get_by_label("Source URL").fill(f"file://{CLIP}?realtime=true&loop=true")
        page.get_by_label("Sample rate (fps)").fill("2")
        page.get_by_role("button", name="Test source").click()
        expect(page.locator(".test-result")).to_contain_text("OK", timeout=30_000)
        page.get_by_role("button", name="Save camera").click()
        card = page.locator("article[data-camera='plaza']")
        expect(card).to_be_visible()
        expect(card.locator(".status")).to_contain_text("online", timeout=60_000)
        loaded(page, "article[data-camera='plaza'] img.snapshot", timeout=60_000)
        # The frame rate it receives, measured between two refreshes of the list.
        expect(card.locator(".fps-in")).to_contain_text(" fps", timeout=15_000)
        check(page, "cameras")

        # The editor with the snapshot to draw zones on.
        card.get_by_role("button", name="Edit Plaza").click()
        expect(page.get_by_role("heading", name="Edit Plaza")).to_be_visible()
        loaded(page, "#camera-editor .canvas img")
        # Draw a zone and a motion mask by clicking on the snapshot, then save both.
        shapes = page.locator("#camera-editor svg.shapes")
        box = shapes.bounding_box()

        def click_at(x, y):
            page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])

        for x, y in [(0.1, 0.6), (0.5, 0.6), (0.5, 0.95)]:
            click_at(x, y)
        page.get_by_label("Shape name").fill("lawn")
        page.get_by_role("button", name="Finish shape").click()
        page.get_by_label("Draw").select_option("mask")
        for x, y in [(0.8, 0.05), (0.95, 0.05), (0.95, 0.3), (0.8, 0.3)]:
            click_at(x, y)
        page.get_by_label("Shape name").fill("clock")
        page.get_by_role("button", name="Finish shape").click()
        expect(page.locator("#camera-editor polygon.zone")).to_have_count(1)
        expect(page.locator("#camera-editor polygon.mask")).to_have_count(1)
        check(page, "camera-editor")
        page.get_by_role("button", name="Save camera").click()
        expect(page.locator("#camera-editor form")).to_have_count(0)
        saved = ok(api.get("/api/v1/cameras/plaza"), "plaza")
        assert [z["name"] for z in saved["zones"]] == ["lawn"], saved["zones"]
        lawn = saved["zones"][0]["polygon"]
        assert len(lawn) == 3 and abs(lawn[0]["x"] - 0.1) < 0.02 and abs(lawn[2]["y"] - 0.95) < 0.02, lawn
        masks = ok(api.get("/api/v1/calibration"), "calibration")["cameras"]["plaza"]["motion_masks"]
        assert [m["name"] for m in masks] == ["clock"] and len(masks[0]["polygon"]) == 4, masks

        # Incidents: the page is open when the rule is switched on; the incident arrives over
        # the WebSocket, without a reload.
        page.get_by_role("link", name="Incidents").click()
        expect(page.locator(".live-state")).to_have_text("live")
        page.evaluate("window.__sameDocument = true")
        ok(api.patch("/api/v1/cameras/plaza", data={"features": {"intrusion": True}, "zones": [{"name": "walkway", "polygon": WALKWAY}]}), "switch intrusion on")
        row = page.locator("#incident-rows tr[data-incident]").first
        expect(row).to_be_visible(timeout=SLOW)
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        loaded(page, "#incident-rows tr[data-incident] img")
        check(page, "incidents")

        # The incident page: evidence, then acknowledge in one click, and the audit stream
        # shows the change with the key as its actor.
        row.get_by_role("link").click()
        expect(page.get_by_role("heading", name="Evidence")).to_be_visible()
        loaded(page, ".evidence img")
        # The persons seen in the frame are outlined, the intruder in the incident's colour.
        expect(page.locator(".evidence .box.involved").first).to_be_visible()
        page.get_by_role("button", name="Acknowledge").click()
        audit = page.locator("#audit")
        expect(audit).to_contain_text("incident.status_changed")
        expect(audit).to_contain_text("active → investigating")
        expect(audit).to_contain_text("key:")
        expect(page.locator(".meta .badge.investigating")).to_be_visible()
        check(page, "incident")
        # Another operator's note (through the API) appears on the open page without a reload.
        incident_id = page.url.rsplit("/", 1)[-1]
        page.evaluate("window.__samePage = true")
        ok(api.patch(f"/api/v1/incidents/{incident_id}", data={"notes": "seen on the monitor wall"}), "note")
        expect(page.locator(".history")).to_contain_text("seen on the monitor wall")
        assert page.evaluate("window.__samePage") is True, "the page reloaded"
        # Resolve it with a reason: the status and the note are one change, by the key.
        page.get_by_label("Note (with a status change: the reason)").fill("a visitor, let in at the desk")
        page.get_by_role("button", name="Mark resolved").click()
        expect(page.locator(".meta .badge.resolved")).to_be_visible()
        expect(audit).to_contain_text("investigating → resolved")
        expect(page.locator(".history")).to_contain_text("a visitor, let in at the desk")
        assert page.get_by_role("button", name="Mark escalated").count() == 0, "a resolved incident offers moves"
        # Stop the clip: the rest runs faster without the pedestrian camera's model load.
        ok(api.post("/api/v1/cameras/plaza/stop"), "stop plaza")

        # People: enrol the astronaut by upload.
        page.get_by_role("link", name="People").click()
        page.get_by_label("Name", exact=True).fill("Astronaut")
        page.get_by_label("Pictures (1–5, one face each)").set_input_files(str(ASTRONAUT))
        page.get_by_role("button", name="Enrol", exact=True).click()
        subject = page.locator("article[aria-label='Subject Astronaut']")
        expect(subject).to_be_visible(timeout=60_000)
        loaded(page, "article[aria-label='Subject Astronaut'] img.face")

        # She walks past a camera (frames pushed), is matched, and her track ends.
        ok(api.post("/api/v1/cameras", data={"id": "door", "name": "Door", "source": "push", "sample_fps": 5}), "add door")
        picture = ASTRONAUT.read_bytes()
        for _ in range(5):
            ok(api.post("/api/v1/cameras/door/frames", multipart={"files": {"name": "astronaut.png", "mimeType": "image/png", "buffer": picture}}), "push a frame")
        deadline = time.time() + 60
        while not ok(api.get("/api/v1/alerts"), "alerts")["items"]:
            assert time.time() < deadline, "no alert for the astronaut"
            time.sleep(1)
        ok(api.post("/api/v1/cameras/door/stop"), "stop door")
        page.reload()
        expect(page.locator("#alert-rows")).to_contain_text("Astronaut")
        check(page, "people")

        # Search by her picture: her track on `door`, with its face and frames.
        page.get_by_role("link", name="Search").click()
        page.get_by_label("Picture (one face)").set_input_files(str(ASTRONAUT))
        # The track is searchable once it ended; its clip (of her incident on the door camera,
        # encoded from the pushed frames) once the camera stopped.
        hit = page.locator("#search-results li.hit[data-camera='door']")
        deadline = time.time() + 60
        while True:
            page.get_by_role("button", name="Search", exact=True).click()
            expect(page.locator("#results-title, #search-results .error")).to_be_visible(timeout=30_000)
            if hit.count() and hit.first.locator("video.clip").count():
                break
            assert time.time() < deadline, "the search never found her track on door"
            time.sleep(1)
        expect(page.locator(".identified")).to_contain_text("Astronaut")
        loaded(page, "#search-results li.hit img")
        # The clip plays from a signed URL: the browser reads its length through range requests.
        page.wait_for_function(
            "() => { const v = document.querySelector('#search-results video.clip'); return v && v.readyState >= 1 && v.duration > 0; }",
            timeout=30_000,
        )
        expect(page.locator(".timeline .mark")).to_have_count(hit.count() + page.locator("#search-results li.hit:not([data-camera='door'])").count())
        check(page, "search")

        # An unknown face seen on a camera becomes a new subject: the hit's face crop, enrolled.
        first = hit.first
        first.get_by_label("Add this face to").select_option(label="a new subject")
        first.get_by_label("Name", exact=True).fill("Door visitor")
        first.get_by_role("button", name="Enrol this face").click()
        expect(page.locator(".toast").filter(has_text="Face enrolled")).to_be_visible(timeout=30_000)
        visitor = [s for s in ok(api.get("/api/v1/subjects"), "subjects")["items"] if s["name"] == "Door visitor"]
        assert len(visitor) == 1 and visitor[0]["face_count"] == 1, visitor

        # Erase her, with a confirmation; she is gone from the library and from search.
        page.get_by_role("link", name="People").click()
        page.get_by_role("button", name="Erase Astronaut").click()
        page.get_by_role("dialog").get_by_role("button", name="Erase").click()
        expect(subject).to_have_count(0)
        assert not any(s["name"] == "Astronaut" for s in ok(api.get("/api/v1/subjects"), "subjects")["items"])

        # System: health, backend, projections, dead-letter queue.
        page.get_by_role("link", name="System").click()
        expect(page.get_by_role("heading", name="Projections and relays")).to_be_visible()
        expect(page.get_by_role("heading", name="Dead-letter queue")).to_be_visible()
        check(page, "system")

        # A read-only key sees no edit buttons.
        reader = ok(api.post("/api/v1/api-keys", data={"name": "wall screen", "scopes": ["read:cameras", "read:incidents", "read:subjects"]}), "reader key")
        ro = browser.new_context().new_page()
        watch_requests(ro)
        sign_in(ro, reader["secret"])
        expect(ro.locator("article[data-camera='plaza']")).to_be_visible()
        assert ro.get_by_role("button", name="Add camera").count() == 0
        assert ro.get_by_role("button", name="Edit Plaza").count() == 0
        assert ro.get_by_role("button", name="Stop Plaza").count() == 0 and ro.get_by_role("button", name="Start Plaza").count() == 0
        ro.get_by_role("link", name="Incidents").click()
        expect(ro.locator("#incident-rows tr[data-incident]").first).to_be_visible()
        assert ro.get_by_role("button", name="Acknowledge").count() == 0
        ro.locator("#incident-rows tr[data-incident] a").first.click()
        expect(ro.get_by_role("heading", name="Evidence")).to_be_visible()
        assert ro.get_by_role("heading", name="Workflow").count() == 0
        ro.get_by_role("link", name="People").click()
        expect(ro.get_by_role("heading", name="Face library")).to_be_visible()
        assert ro.locator("#enrol-form").count() == 0
        assert ro.get_by_role("link", name="Search").is_hidden(), "search shown to a key without the scope"

        # A key restricted to `door` sees only that camera.
        door = ok(api.post("/api/v1/api-keys", data={"name": "door screen", "scopes": ["read:cameras", "read:incidents"], "camera_ids": ["door"]}), "door key")
        rc = browser.new_context().new_page()
        watch_requests(rc)
        sign_in(rc, door["secret"])
        expect(rc.locator("article[data-camera='door']")).to_be_visible()
        assert rc.locator("article[data-camera]").count() == 1, "a restricted key sees other cameras"
        rc.get_by_role("link", name="Incidents").click()
        expect(rc.locator(".live-state")).to_have_text("live")
        assert rc.locator("#incident-rows tr[data-incident]").evaluate_all(
            "rows => rows.every(r => r.children[2].textContent === 'door')"
        ), "a restricted key sees incidents of other cameras"

        # Signing out forgets the key.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('vigil.key')") is None

        assert not outside, f"requests outside the server: {outside}"
        browser.close()
    log(f"page load (navigation to load event) {load_ms:.0f} ms on loopback")
    log("accessibility: violations per screen (none serious): " + ", ".join(f"{k} {v}" for k, v in accessibility.items()))
    log(f"screenshots in {SHOTS}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"console-tests: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
