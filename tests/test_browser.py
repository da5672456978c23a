"""A real headless Chromium (Debian's, driven by Playwright) using the launched app as a classroom would.

At a projector's 1366x768, at 1920x1080 and on a 390 px phone: the layout's sizes (every panel's numbers above a
projector's fold; the title on its own row on a phone), labels that follow the settings, k'/k usable only where it acts,
a typed number applied with Enter (one out of range: the nearest valid value), every bad upload resetting the view to
one plain message (after a good upload and after an example click), the one-click comparison image, a share downloaded
and decoded (earlier files gone when the Share tab is opened again, a wrong key refused with the view cleared), and
switching models. Serves the bundled models when they are there, else tiny random ones.
`SAE_UPDATE_SCREENSHOT=1` with the bundled models writes the three screenshots to assets/ for the README; a plain run
writes them to the test's temporary folder. Skips when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.serving import OURS, AppProcess, chromium_available, launch_chromium
from sae.app import render
from sae.zoo import files
from tests.conftest import REPO

PHOTO = REPO / "assets" / "examples" / "astronaut.png"
TIMEOUT_MS = 120_000  # a shared 2-core machine can be slow
SIZES = {"projector": (1366, 768), "wide": (1920, 1080), "phone": (390, 844)}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not chromium_available():
    pytest.skip("Chromium not found (apt-get install chromium)", allow_module_level=True)


def _models(tmp_path_factory) -> tuple[list[str], bool]:
    """(model directories to serve, whether they are the real bundled ones, worth screenshots for the README)."""
    bundled = files.bundled_models()
    if len(bundled) >= 1:
        return [str(path) for path in bundled.values()], True
    import torch

    from sae.core.model import SparseAutoencoder
    from tests.conftest import TINY

    torch.manual_seed(0)
    directories = []
    for name, size in (("tiny64", 64), ("tiny128", 128)):
        directory = tmp_path_factory.mktemp(name)
        SparseAutoencoder(**(TINY | {"image_size": size, "stem": 4 if size == 64 else 8})).save_pretrained(directory)
        directories.append(str(directory))
    return directories, False


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    directories, real = _models(tmp_path_factory)
    arguments = [argument for directory in directories for argument in ("--model", directory)]
    with AppProcess(OURS, arguments, env={"GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}) as process:
        yield process.url, real


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(app, browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app[0], wait_until="load")
    page.wait_for_selector("#k-slider input[type=range]")
    yield page
    context.close()


STATE = "() => (document.querySelector('#face-note')?.innerText ?? '') + '|' + (document.querySelector('#panels')?.innerHTML ?? '')"


BUSY = r"/^\s*(processing|queue|[0-9.]+\s*s\b)/i"  # Gradio's progress timer stands in the face note while a face is drawn


def upload(page, path: Path) -> None:
    """Hand a file to the photo box and wait until the server answered (the face note or the panels changed)."""
    before = page.evaluate(STATE)
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.wait_for_function(f"(b) => ({STATE})() !== b", arg=before)
    page.wait_for_function(f"() => !{BUSY}.test(document.querySelector('#face-note').innerText)")
    page.wait_for_timeout(500)


def panels_shown(page) -> None:
    page.wait_for_selector("#caption-1")


def title(page, index: int) -> str:
    return page.locator(f"#panel-{index} .title").inner_text()


def wait_title(page, index: int, needle: str) -> str:
    page.wait_for_function(
        "([i, n]) => { const t = document.querySelector(`#panel-${i} .title`); return t && t.innerText.includes(n); }", arg=[index, needle]
    )
    return title(page, index)


def shot(page, name: str, real: bool, tmp_path: Path) -> None:
    update = real and os.environ.get("SAE_UPDATE_SCREENSHOT") == "1"
    page.wait_for_timeout(400)
    page.screenshot(path=str(REPO / "assets" / f"screenshot-{name}.png" if update else tmp_path / f"{name}.png"), full_page=False)


def test_projector_layout_and_screenshots(app, page, tmp_path):
    upload(page, PHOTO)
    panels_shown(page)
    widths = page.evaluate("() => [...document.querySelectorAll('#panels .panel')].map(p => p.getBoundingClientRect().width)")
    assert len(widths) >= 5 and min(widths) >= 200, widths
    titles = page.evaluate(
        """() => [...document.querySelectorAll('#panels .title')].map(t => {
            const r = t.getBoundingClientRect();
            const top = document.elementFromPoint(r.left + 3, r.top + r.height / 2);
            return {text: t.innerText, whole: t.scrollWidth <= t.clientWidth + 1, own: top === t || t.contains(top)};
        })"""
    )
    assert all(t["whole"] for t in titles), titles  # no title cut off
    model_name = page.evaluate("() => { const e = document.querySelector('#model input'); return [e.scrollWidth, e.clientWidth]; }")
    assert model_name[0] <= model_name[1], model_name  # the model's name fits its box, clear of the arrow
    page.evaluate("() => window.scrollTo(0, 0)")
    for selector in ("#k-slider", "#decoys", "#permute", "#known"):
        box = page.locator(selector).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 768, (selector, box)
    captions = page.evaluate("() => [...document.querySelectorAll('#panels .caption')].map(c => c.getBoundingClientRect().bottom)")
    assert captions and max(captions) <= 768, captions  # every panel's numbers without scrolling
    chart = page.locator("#chart-block").bounding_box()
    assert chart["y"] < 2 * 768, chart  # after at most one scroll
    assert_chart_reads(page, "wide")
    page.evaluate("() => document.querySelector('#panels').scrollIntoView()")
    assert all(
        t["own"]
        for t in page.evaluate(
            """() => [...document.querySelectorAll('#panels .title')].map(t => {
            const r = t.getBoundingClientRect(); const top = document.elementFromPoint(r.left + 3, r.top + r.height / 2);
            return {own: top === t || t.contains(top)};
        })"""
        )
    )  # nothing drawn over a title
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "projector", app[1], tmp_path)
    page.get_by_role("tab", name="Decode").click()  # the reconstruction beside the inputs, above the fold with the button
    for selector in ("#public-in", "#key-in", "#decode-button", "#decoded"):
        box = page.locator(selector).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 768, (selector, box)
    page.get_by_role("tab", name="Explore").click()
    panels_shown(page)
    page.set_viewport_size({"width": 1920, "height": 1080})
    shot(page, "wide", app[1], tmp_path)
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("() => document.querySelector('#panels').scrollIntoView()")
    tops = page.evaluate("() => [...document.querySelectorAll('#panels .panel')].map(p => Math.round(p.getBoundingClientRect().top))")
    assert tops[0] == tops[1] and tops[2] > tops[1], tops  # two panels a row
    heading, model = page.locator("#heading").bounding_box(), page.locator("#model").bounding_box()
    assert heading["width"] >= 300 and model["y"] >= heading["y"] + heading["height"], (heading, model)  # the title on its own row
    assert_chart_reads(page, "narrow")
    shot(page, "phone", app[1], tmp_path)


CHART_TEXT = """() => {
    const shown = [...document.querySelectorAll('#chart .chart-svg')].filter(svg => getComputedStyle(svg).display !== 'none');
    return shown.map(svg => {
        const box = svg.getBoundingClientRect(), view = svg.viewBox.baseVal;
        const scale = Math.min(box.width / view.width, box.height / view.height);  // as the SVG draws its viewBox
        const texts = [...svg.querySelectorAll('text')];
        const sizes = texts.map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
        const inside = texts.every(t => { const r = t.getBoundingClientRect();
            return r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1 && r.bottom <= box.bottom + 1; });
        return {name: svg.classList[1], smallest: Math.min(...sizes), largest: Math.max(...sizes), inside};
    });
}"""


def assert_chart_reads(page, drawing: str) -> None:
    """Only the chart's `drawing` shows, its labels drawn 12-20 px (the font size times the drawing's scale), none cut
    off at its edges."""
    shown = page.evaluate(CHART_TEXT)
    assert [item["name"] for item in shown] == [drawing], shown
    assert 12 <= shown[0]["smallest"] <= shown[0]["largest"] <= 20 and shown[0]["inside"], shown


def test_the_chart_reads_at_every_width(page):
    """From a small phone to a projector, whichever drawing the page shows has labels a reader can read."""
    upload(page, PHOTO)
    panels_shown(page)
    sizes = [(360, "narrow"), (390, "narrow"), (600, "narrow"), (800, "narrow"), (801, "wide"), (1024, "wide"), (1920, "wide")]
    for width, drawing in sizes:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        assert_chart_reads(page, drawing)


def test_labels_follow_the_settings_and_enter_applies_typed_values(page):
    upload(page, PHOTO)
    panels_shown(page)
    assert "all of the key" in title(page, 1) and "decoded as is" in title(page, 2)
    page.locator("#decoys input").uncheck()
    assert "no decoys" in wait_title(page, 2, "no decoys")
    page.locator("#decoys input").check()
    wait_title(page, 2, "k'")
    page.locator("#extra-attack input").click()
    page.get_by_role("option", name="Re-encode attack").click()
    assert wait_title(page, 4, "Re-encode") == "Re-encode attack"
    for selector, value, panel, needle in (("#owner", "0.5", 1, "50% of the key"), ("#known", "0.25", 3, "knows 25%")):
        box = page.locator(f"{selector} input[type=number]")
        box.fill(value)
        box.press("Enter")
        assert needle in wait_title(page, panel, needle)
    assert page.locator("#ratio input[type=range]").is_disabled()  # k'/k does nothing while decoys fill every position
    page.locator("#fill-all input").uncheck()
    page.wait_for_function("() => !document.querySelector('#ratio input[type=range]').disabled")
    ratio = page.locator("#ratio input[type=number]")
    ratio.fill("3")
    ratio.press("Enter")
    wait_title(page, 2, "k' = 96")
    k_box = page.locator("#k-slider input[type=number]")
    k_max = page.locator("#k-slider input[type=range]").get_attribute("max")
    for typed, shown, snapped in (("5000", f"Guess {k_max} of", k_max), ("0", "Guess 1 of", "1")):  # out of range: the nearest k
        k_box.fill(typed)
        k_box.press("Enter")
        assert k_box.input_value() == snapped  # the box shows the k the view uses, at once
        wait_title(page, 3, shown)
    known_box = page.locator("#known input[type=number]")
    known_box.fill("")
    known_box.press("Enter")
    assert known_box.input_value() == "0"  # an emptied box: its minimum
    page.wait_for_function("() => !document.querySelector('#panel-3 .title').innerText.includes('knows')")
    text = page.locator("body").inner_text()
    assert "-0.000" not in text and "PSNR: how close to the model input" in text
    assert page.locator("#chart-block .legend .item").count() >= 6  # PSNR, SSIM, key holder and one per attack
    assert "Linkage" in page.locator("#linkage").inner_text()
    stored = page.evaluate("() => [localStorage, sessionStorage].flatMap(s => Object.keys(s).map(k => k + '=' + s.getItem(k)))")
    assert not any("run-history" in item or "data:image" in item for item in stored), [item[:80] for item in stored]  # no faces kept


SOURCE = "(i) => document.querySelector(`#panel-${i} img`)?.getAttribute('src') ?? ''"


def test_a_slider_move_keeps_the_model_input_in_the_page(page):
    """The model input is sent with a new face only (the panels' `reference` prop): a slider step changes the other
    panels and leaves it shown as it was."""
    upload(page, PHOTO)
    panels_shown(page)
    reference, holder = page.evaluate(SOURCE, 0), page.evaluate(SOURCE, 1)
    assert reference.startswith("data:image/webp;base64,") and holder.startswith("data:image/webp;base64,")
    slider = page.locator("#k-slider input[type=range]")
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")
    page.wait_for_function(f"(h) => ({SOURCE})(1) !== h && ({SOURCE})(1) !== ''", arg=holder)
    page.wait_for_timeout(300)
    assert page.evaluate(SOURCE, 0) == reference and page.locator("#panel-0 img").count() == 1


def test_slider_steps_made_while_a_face_is_drawn_are_in_the_final_view(page):
    """Steps of the slider made after an upload's request left are answered first (before the face is there); once
    the upload's panels land, drawn at the k its request carried, the page redraws them at the slider's k, so the
    panels, chart and budget agree with the slider."""
    slider = page.locator("#k-slider input[type=range]")
    start = int(slider.input_value())
    with page.expect_request(lambda request: "queue/join" in request.url):  # the upload's event, carrying k = start
        page.locator("#photo input[type=file]").set_input_files(str(PHOTO))
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")
    page.wait_for_function(f"() => !{BUSY}.test(document.querySelector('#face-note').innerText)")
    panels_shown(page)
    k = int(slider.input_value())
    assert k == start - 3
    page.wait_for_timeout(1500)  # the redraw, and anything else still on its way
    assert page.locator("#budget").inner_text().startswith(f"k = {k} per group") and int(slider.input_value()) == k
    legend = page.locator("#chart").inner_text()
    assert f"key holder at k = {k}:" in legend
    holder_db = legend.split(f"key holder at k = {k}:")[1].split("dB")[0].strip()
    assert f"PSNR {holder_db} dB" in page.locator("#caption-1").inner_text()  # the key holder's panel is at that k too


# How Gradio's HTML component evaluates a template without Handlebars tags: a JavaScript template literal over its props.
TEMPLATE = "([template, props]) => new Function(...Object.keys(props), 'return `' + template + '`;')(...Object.values(props))"


def test_the_panels_template_fills_only_its_own_views_slot(page):
    slot = render.reference_slot("ab12")
    panels = f"<div>{slot}</div>"

    def shown(value, view, reference):
        return page.evaluate(TEMPLATE, [render.PANELS_TEMPLATE, {"value": value, "view": view, "reference": reference}])

    assert shown(panels, "ab12", "<img src=x>") == render.with_reference(panels, "ab12", "<img src=x>") == "<div><img src=x></div>"
    assert shown(panels, "cd34", "<img src=x>") == panels  # another view's input
    assert shown(panels, "ab12", "$& $1") == "<div>$& $1</div>"  # taken literally, not as a replacement pattern
    assert shown(None, "", "") == ""


BAD = {
    "text file named .png": (b"this is not an image at all", "Not a readable image file"),
    "1x1 PNG": (None, "at least 16x16"),
}


def _bad_file(tmp_path: Path, name: str) -> Path:
    data, _ = BAD[name]
    path = tmp_path / ("notimage.png" if data else "tiny.png")
    if data:
        path.write_bytes(data)
    else:
        Image.new("RGB", (1, 1), "red").save(path)
    return path


@pytest.mark.parametrize("before", ["a good upload", "an example click"])
def test_every_bad_upload_resets_the_view_with_one_plain_message(page, tmp_path, before):
    for name, (_, message) in BAD.items():
        if before == "a good upload":
            upload(page, PHOTO)
        else:
            page.locator(".gallery button, .gallery-item, [data-testid='examples'] button").first.click()
            page.wait_for_selector("#caption-1")
        panels_shown(page)
        assert page.locator("#photo img.no-preview").count() == 0  # a readable photo after an unreadable one is shown
        assert page.locator("#photo img").first.evaluate("i => getComputedStyle(i).visibility") == "visible"
        upload(page, _bad_file(tmp_path, name))
        note = page.locator("#face-note").inner_text()
        assert message in note, (name, note)
        assert page.locator("#caption-1").count() == 0 and page.locator("#panel-0 img").count() == 0  # panels cleared
        assert page.locator("#chart-block svg").count() == 0  # chart cleared
        if name == "text file named .png":  # the browser cannot draw it: no broken-image icon, plain words instead
            page.wait_for_selector("#photo img.no-preview", state="attached")
            assert page.locator("#photo img.no-preview").evaluate("i => getComputedStyle(i).visibility") == "hidden"  # no icon
            assert page.locator("#photo .image-frame").evaluate("f => getComputedStyle(f, '::after').content") == '"No preview"'
        text = page.locator("body").inner_text()
        assert "/tmp" not in text and "Traceback" not in text and "preprocess" not in text.lower(), name
        assert text.count(message) == 1 and not re.search(r"[a-z]Error\b", text)  # the face note alone (no toast, no exception)
        assert page.locator(".toast-body, [data-testid='toast-body']").count() == 0


def test_comparison_image_downloads_in_one_click(page, tmp_path):
    upload(page, PHOTO)
    panels_shown(page)
    with page.expect_download() as download:
        page.locator("#compare-button").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("comparison-k") and path.suffix == ".png"
    with Image.open(path) as image:
        assert image.width >= 5 * 256 and image.height > 256


def test_share_decode_and_a_wrong_key(page, tmp_path):
    upload(page, PHOTO)
    panels_shown(page)
    page.get_by_role("tab", name="Share").click()
    page.wait_for_function("() => document.querySelector('#share-what').innerText.includes('Will share this face')")
    assert page.locator("#share-face img").count() == 1
    downloads = {}
    note = ""
    for attempt in range(2):
        page.locator("#share-button").click()
        made = "(b) => { const t = document.querySelector('#share-note').innerText; return t.includes('.saep') && t !== b; }"
        page.wait_for_function(made, arg=note)
        note = page.locator("#share-note").inner_text()
        for name in ("public-file", "key-file"):
            link = page.locator(f"#{name} a").first
            with page.expect_download() as download:
                link.click()
            saved = tmp_path / f"{attempt}-{download.value.suggested_filename}"
            download.value.save_as(saved)
            downloads[(attempt, name)] = saved
        page.wait_for_timeout(300)
    assert downloads[(0, "public-file")].name.split("-", 1)[1].startswith("face-") and downloads[(0, "public-file")].suffix == ".saep"
    assert downloads[(0, "public-file")].name[2:] != downloads[(1, "public-file")].name[2:]  # fingerprints in the names
    page.get_by_role("tab", name="Explore").click()
    page.get_by_role("tab", name="Share").click()  # back to a face or settings that may have changed: no earlier files
    page.wait_for_function("() => !document.querySelector('#public-file a') && !document.querySelector('#key-file a')")
    assert ".saep" not in page.locator("#share-note").inner_text()
    page.get_by_role("tab", name="Decode").click()

    def send(public: Path, key: Path) -> str:
        # Each note names its file: waiting for "received" alone can pass on the previous file's note.
        received = "([id, name]) => document.querySelector(id).innerText.includes('received: ' + name)"
        page.locator("#public-in input[type=file]").set_input_files(str(public))
        page.wait_for_function(received, arg=["#public-note", public.name])
        page.locator("#key-in input[type=file]").set_input_files(str(key))
        page.wait_for_function(received, arg=["#key-note", key.name])
        before = page.locator("#decode-note .prose").first.inner_text() if page.locator("#decode-note .prose").count() else ""
        page.locator("#decode-button").click()
        page.wait_for_function(
            "(b) => { const n = document.querySelector('#decode-note .prose'); const t = n ? n.innerText : '';"
            " return t !== b && /Decoded|Wrong|Damaged|Passphrase|Upload/.test(t); }",
            arg=before,
        )
        return page.locator("#decode-note .prose").first.inner_text()

    assert "Decoded with" in send(downloads[(0, "public-file")], downloads[(0, "key-file")])
    page.wait_for_selector("#decoded img")
    page.locator("#key-in input[type=file]").set_input_files(str(downloads[(1, "key-file")]))
    page.wait_for_function("() => !document.querySelector('#decoded img')")  # a new file: the last reconstruction goes
    assert "Decoded with" not in page.locator("#decode-note").inner_text()
    assert "Wrong key" in send(downloads[(0, "public-file")], downloads[(1, "key-file")])
    page.wait_for_function("() => !document.querySelector('#decoded img')")
    assert page.locator("#decoded img").count() == 0  # the earlier reconstruction is gone


def test_switching_models_keeps_the_photo_and_settings(app, page, tmp_path):
    """Switching re-encodes the same photo with the other model at the same settings; with the bundled models and
    SAE_UPDATE_SCREENSHOT=1 the panels of both, one above the other, become assets/screenshot-models.png."""
    upload(page, PHOTO)
    panels_shown(page)
    first, reference = title(page, 0), page.evaluate(SOURCE, 0)
    page.set_viewport_size({"width": 1366, "height": 900})
    shots = [tmp_path / "model-0.png"]
    page.locator("#panels").screenshot(path=str(shots[0]))
    if pick_model(page) is None:
        pytest.skip("only one model is served")
    page.wait_for_function("(f) => { const t = document.querySelector('#panel-0 .title'); return t && t.innerText !== f; }", arg=first)
    assert title(page, 0) != first and page.locator("#caption-1").count() == 1
    assert page.evaluate(SOURCE, 0) not in ("", reference)  # the other model's input, sent with the switch
    assert "Face found" in page.locator("#face-note").inner_text()
    page.wait_for_timeout(400)
    shots.append(tmp_path / "model-1.png")
    page.locator("#panels").screenshot(path=str(shots[1]))
    pictures = [Image.open(path).convert("RGB") for path in shots]
    stacked = Image.new("RGB", (max(p.width for p in pictures), sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        stacked.paste(picture, (0, top))
        top += picture.height
    update = app[1] and os.environ.get("SAE_UPDATE_SCREENSHOT") == "1"
    stacked.save(REPO / "assets" / "screenshot-models.png" if update else tmp_path / "models.png")


def pick_model(page, name: str | None = None) -> tuple[str, str] | None:
    """Choose `name` (default: another model than the current one) in the menu above the tabs: (the one before, the
    one chosen); None when only one model is served."""
    page.locator("#model input").click()
    options = page.get_by_role("option")
    if options.count() < 2:
        page.keyboard.press("Escape")
        return None
    current = page.locator("#model input").input_value()
    names = [options.nth(i).inner_text().replace("✓", "").strip() for i in range(options.count())]  # the chosen one is ticked
    chosen = name if name is not None else next(other for other in names if other != current)
    page.get_by_role("option", name=chosen).click()
    return current, chosen


def test_a_model_switch_on_the_share_and_decode_tabs(page, tmp_path):
    """The model menu sits above the tabs: switched on the Share tab, the tab describes the new model and drops the
    files made with the previous one; on the Decode tab, a code of the previous model is named as such, and files in
    each other's boxes are called that, not damage."""
    upload(page, PHOTO)
    panels_shown(page)
    page.get_by_role("tab", name="Share").click()
    page.wait_for_function("() => document.querySelector('#share-what').innerText.includes('Will share this face')")
    page.locator("#share-button").click()
    page.wait_for_function("() => document.querySelector('#share-note').innerText.includes('.saep')")
    saved = {}
    for name in ("public-file", "key-file"):
        with page.expect_download() as download:
            page.locator(f"#{name} a").first.click()
        saved[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(saved[name])
    picked = pick_model(page)
    if picked is None:
        pytest.skip("only one model is served")
    before, chosen = picked
    page.wait_for_function("(m) => document.querySelector('#share-what').innerText.includes(m)", arg=chosen)
    page.wait_for_function("() => !document.querySelector('#public-file a') && !document.querySelector('#key-file a')")
    assert before not in page.locator("#share-what").inner_text() and ".saep" not in page.locator("#share-note").inner_text()
    page.get_by_role("tab", name="Decode").click()
    note = "#decode-note .prose"

    def decode(public: Path, key: Path, before_text: str) -> str:
        page.locator("#public-in input[type=file]").set_input_files(str(public))
        page.wait_for_function("(n) => document.querySelector('#public-note').innerText.includes('received: ' + n)", arg=public.name)
        page.locator("#key-in input[type=file]").set_input_files(str(key))
        page.wait_for_function("(n) => document.querySelector('#key-note').innerText.includes('received: ' + n)", arg=key.name)
        page.locator("#decode-button").click()
        changed = "([s, b]) => { const n = document.querySelector(s); return n !== null && n.innerText !== b && n.innerText !== ''; }"
        page.wait_for_function(changed, arg=[note, before_text])
        return page.locator(note).first.inner_text()

    made_with = decode(saved["public-file"], saved["key-file"], "")
    assert (
        f"This public code was made with {before}: choose it in the Model menu" in made_with and page.locator("#decoded img").count() == 0
    )
    # the boxes accept their own file type only: files in each other's boxes come renamed (or through the API)
    renamed_key, renamed_public = tmp_path / "renamed.saep", tmp_path / "renamed.saek"
    renamed_key.write_bytes(saved["key-file"].read_bytes())
    renamed_public.write_bytes(saved["public-file"].read_bytes())
    swapped = decode(renamed_key, renamed_public, made_with)
    assert swapped.startswith("The two files are in each other's boxes")
    pick_model(page, before)  # back to the model that made them: the files now decode
    page.wait_for_function("(s) => { const n = document.querySelector(s); return n === null || n.innerText === ''; }", arg=note)
    assert "Decoded with" in decode(saved["public-file"], saved["key-file"], "")
    page.wait_for_selector("#decoded img")
