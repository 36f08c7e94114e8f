"""The explorer page in a real browser: Debian's Chromium driven by Playwright.

A server runs on an ephemeral loopback port in a background thread. The tests load the
page, pick models, click feature-map cells (mouse and keyboard) and compare the panel with
the API's trace, draw digits (mouse and touch), change the playground, and save
screenshots (to a temporary folder, or to ``$CONVSCOPE_SCREENSHOTS`` when set).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"end-to-end tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="end-to-end tests need playwright (pip install)")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from convscope.web import create_app  # noqa: E402
from convscope.web.background import BackgroundServer  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CONVSCOPE_SCREENSHOTS") or tmp_path_factory.mktemp("web-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1366, "height": 860}, has_touch=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.goto(server + "/")
    pg.wait_for_selector("body[data-ready=true]", timeout=30_000)
    yield pg
    context.close()
    assert errors == [], errors


def api_trace(server: str, layer: str, index: list[int], source: dict) -> dict:
    r = httpx.post(f"{server}/api/models/digits/trace", json={"input": source, "layer": layer, "index": index},
                   timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def panel_index(page) -> tuple[str, list[int]]:
    title = page.inner_text("#panel-body h3")
    match = re.match(r"(\S+) \(\w+\) at \[([\d, ]+)\]", title)
    assert match, title
    return match.group(1), [int(i) for i in match.group(2).split(",")]


def _first_paint(page) -> float | None:
    paint = page.evaluate("performance.getEntriesByType('paint').map(e => [e.name, e.startTime])")
    return dict(paint).get("first-contentful-paint")


def test_page_first_paint_and_layout(page, server):
    paints = [_first_paint(page)]
    # the best of up to three loads: other processes on a shared machine only ever add time
    while paints[-1] is not None and min(paints) >= 1000 and len(paints) < 3:
        page.reload()
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        paints.append(_first_paint(page))
    assert None not in paints, paints
    print(f"\nfirst contentful paint (ms): {[round(p) for p in paints]}")
    assert min(paints) < 1000
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id || e.name)""")
    assert unlabelled == []
    for width in (1280, 1024):  # laptop widths: nothing runs off the side
        page.set_viewport_size({"width": width, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_narrow_window_stacks_the_panel_without_running_off_the_side(page):
    """At phone widths the panel goes under the page: main had kept its content's width
    (820 px at 400) and the explain topic list its longest option's, so text ran off the side."""
    page.set_viewport_size({"width": 400, "height": 800})
    page.wait_for_timeout(100)
    assert page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]") == [400, 400]
    page.click("canvas.map[data-layer='0'][data-channel='1']", position={"x": 5, "y": 5})
    page.wait_for_selector("#panel-sum")
    assert page.evaluate("document.documentElement.scrollWidth") == 400


def test_the_api_docs_page_loads_without_console_errors(browser, server):
    """/docs is a page too: the browser's own favicon request was a 404 in its console."""
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda msg: errors.append(f"{msg.text} ({msg.location['url']})") if msg.type == "error" else None)
    pg.goto(server + "/docs", wait_until="networkidle")
    pg.wait_for_timeout(500)
    title = pg.title()
    context.close()
    assert title == "convscope API" and errors == [], errors


def test_pick_a_model_and_explain_a_cell(page, server, shots):
    page.select_option("#model-select", "zoo:lenet5_modern")
    page.wait_for_selector("#arch-table tbody tr >> text=Conv2d")
    page.wait_for_function("document.querySelector('#input-source').value === 'digit' && "
                           "document.querySelector('canvas.map[data-layer]') !== null")
    page.wait_for_function("window.convscope.inputMap && window.convscope.inputMap.shape.join() === '1,32,32'")
    page.select_option("#model-select", "digits")
    page.wait_for_function("window.convscope.inputMap.shape.join() === '1,8,8' && window.convscope.layers.length === 9")
    page.wait_for_selector("canvas.map[data-layer='2'][data-channel='5']")
    assert page.inner_text("#arch-table tbody tr:nth-child(3)").split("\t")[:2] == ["2", "Conv2d"]
    page.screenshot(path=str(shots / "architecture.png"))
    page.click("canvas.map[data-layer='2'][data-channel='5']", position={"x": 30, "y": 40})
    page.wait_for_selector("#panel-sum")
    layer, index = panel_index(page)
    assert (layer, index[:2]) == ("2", [0, 5])
    expected = api_trace(server, layer, index, {"source": "digit", "digit": 0})
    assert float(page.get_attribute("#panel-sum", "data-value")) == expected["value"]
    assert page.locator("#panel-body .chan").count() == 32  # one block per input channel
    page.screenshot(path=str(shots / "trace-panel.png"))
    # step into a contributing cell of the previous layer (the ReLU before)
    page.locator("#panel-body .chan button").first.click()
    page.wait_for_function("document.querySelector('#panel-body h3').textContent.startsWith('1 (ReLU)')")
    layer, index = panel_index(page)
    assert float(page.get_attribute("#panel-sum", "data-value")) == api_trace(
        server, layer, index, {"source": "digit", "digit": 0})["value"]


def test_follow_the_strongest_path_to_the_input(page, server):
    """From a class score, the "largest contribution from" button walks layer by layer to the input."""
    page.wait_for_selector("canvas.map[data-layer='8']")
    page.click("canvas.map[data-layer='8']", position={"x": 3, "y": 3})
    page.wait_for_selector("#panel-strongest")
    seen = [panel_index(page)[0]]
    while page.locator("#panel-strongest button").count():
        page.locator("#panel-strongest button").click()
        page.wait_for_function(f"document.querySelector('#panel-body h3')?.textContent.split(' ')[0] !== '{seen[-1]}'")
        page.wait_for_selector("#panel-strongest")
        seen.append(panel_index(page)[0])
    assert seen == ["8", "7", "6", "5", "4", "3", "2", "1", "0"]
    assert page.inner_text("#panel-strongest").startswith("largest contribution from the model input [0, 0, ")


RESIDUAL_SPEC = """input 1x8x8
conv 4 k3 p1 name=stem
residual name=block {
  conv 4 k3 p1
  bn
}
relu name=out
concat name=both {
  branch { conv 2 k1 }
  branch { tanh }
}
relu name=last
flatten
linear 3"""


def test_step_through_a_residual_addition_and_a_concatenation(page, shots):
    """ReLU after a residual block → the block's addition → one of the two layers it added;
    ReLU after a concatenation → the concatenation → the branch layer the value came from."""
    page.click("summary:has-text('Paste a spec')")
    page.fill("#spec-text", RESIDUAL_SPEC)
    page.click("#spec-load")
    page.wait_for_selector("canvas.map[data-layer='out'][data-channel='1']")
    page.click("canvas.map[data-layer='out'][data-channel='1']", position={"x": 20, "y": 20})
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent.startsWith('out (ReLU)')")
    page.locator("#panel-body button[title^='step into block ']").first.click()
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent.startsWith('block (Residual)')")
    assert "op add combines two values" in page.inner_text("#panel-body")
    page.screenshot(path=str(shots / "trace-residual.png"))
    _, index = panel_index(page)
    operands = page.locator("#panel-body p:not(#panel-strongest) button")
    cell = json.dumps(index, separators=(",", ":"))
    titles = [operands.nth(k).get_attribute("title") for k in range(operands.count())]
    assert titles == [f"step into block.bn1 {cell}", f"step into stem {cell}"]
    operands.first.click()
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent"
                           ".startsWith('block.bn1 (BatchNorm2d)')")
    assert panel_index(page)[1] == index
    # a concatenation's value names the branch layer it was copied from: channel 3 is tanh's 1
    page.click("canvas.map[data-layer='last'][data-channel='3']", position={"x": 20, "y": 20})
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent.startsWith('last (ReLU)')")
    page.locator("#panel-body button[title^='step into both ']").first.click()
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent.startsWith('both (Concat)')")
    _, index = panel_index(page)
    assert "copied (cat) from input 1: " in page.inner_text("#panel-body")
    page.locator("#panel-body p:not(#panel-strongest) button").click()
    page.wait_for_function("document.querySelector('#panel-body h3')?.textContent"
                           ".startsWith('both.branch2.tanh1 (Tanh)')")
    assert panel_index(page)[1] == [index[0], index[1] - 2, *index[2:]]


def test_a_large_input_window_fits_in_the_panel(page):
    """A 7×7 window on a 224×224 input: the picture is the window and the cells around it, and
    the 7×7 tables scroll in their column; the whole 224×224 map had been drawn 460 px wide,
    pushing the kernel slice and the products out of the 404 px panel."""
    page.click("summary:has-text('Paste a spec')")
    page.fill("#spec-text", "input 3x224x224\nconv 4 k7 s2 p3 name=stem\nrelu")
    page.click("#spec-load")
    page.wait_for_selector("canvas.map[data-layer='stem'][data-channel='1']")
    page.click("canvas.map[data-layer='stem'][data-channel='1']", position={"x": 40, "y": 40})
    page.wait_for_selector("#panel-sum")
    assert page.locator("#panel-body .chan").count() == 3
    panel = page.evaluate("(p => [p.scrollWidth, p.clientWidth])(document.querySelector('#panel'))")
    assert panel[0] <= panel[1], panel
    picture = page.locator("#panel-body .chan canvas").first
    assert page.evaluate("c => c.width", picture.element_handle()) <= 96
    _, index = panel_index(page)
    rows = re.search(r"rows (-?\d+)…(-?\d+), columns (-?\d+)…(-?\d+)", picture.get_attribute("aria-label"))
    top, bottom, left, right = (int(g) for g in rows.groups())
    assert top <= 2 * index[2] - 3 and 2 * index[2] + 3 <= bottom  # the window read: stride 2, padding 3
    assert left <= 2 * index[3] - 3 and 2 * index[3] + 3 <= right


def _onnx_with_a_constant() -> bytes:
    """Conv → ReduceMean whose axes come from a Constant node (a [2] tensor: no dims per sample)."""
    onnx = pytest.importorskip("onnx")
    import numpy as np

    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    weight = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "w")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Constant", [], ["a"], value=axes),
         helper.make_node("ReduceMean", ["c", "a"], ["y"], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def test_upload_an_onnx_file_with_a_constant(page):
    """The architecture drawing of a graph with a Constant node: its per-sample shape is empty,
    which had made every box after it NaN (console errors, labels drawn over the input's)."""
    page.click("summary:has-text('Upload an ONNX file')")
    page.set_input_files("#onnx-file", {"name": "const.onnx", "mimeType": "application/octet-stream",
                                        "buffer": _onnx_with_a_constant()})
    page.click("#onnx-load")
    page.wait_for_selector("#arch-table tbody tr >> text=Constant")
    assert page.inner_text("#model-select option:checked") == "const.onnx"
    xs = page.evaluate("[...document.querySelectorAll('#arch-drawing svg text')].map(t => t.getAttribute('x'))")
    assert len(xs) == 2 * 4 and "NaN" not in xs  # the input and three layers, each named and sized
    assert [float(x) for x in xs[::2]] == sorted(float(x) for x in xs[::2])


def _pick_and_wait(page, model: str, input_shape: str) -> None:
    page.select_option("#model-select", model)
    page.wait_for_function(f"window.convscope.inputMap.shape.join() === '{input_shape}' && "
                           "document.querySelector('#run-status').textContent.startsWith('ran in')")


def _panel_is_empty(page) -> bool:
    return page.evaluate("document.querySelector('#panel-body').childElementCount === 0 && "
                         "!document.querySelector('#panel-empty').hidden")


def test_the_panel_is_cleared_when_the_model_changes(page):
    page.click("canvas.map[data-layer='0'][data-channel='4']", position={"x": 40, "y": 30})
    page.wait_for_selector("#panel-sum")
    assert page.inner_text("#panel-body h3").startswith("0 (Conv2d) at [0, 4,")
    _pick_and_wait(page, "zoo:seed", "1,28,28")
    assert _panel_is_empty(page), page.inner_text("#panel")
    # a click whose answer arrives after the model changed: the answer is dropped
    held = []
    page.route("**/api/models/*/trace", lambda route: held.append(route))
    page.click("canvas.map[data-layer='0'][data-channel='0']", position={"x": 20, "y": 20})
    page.wait_for_function("document.querySelector('#panel-body').getAttribute('aria-busy') === 'true'")
    _pick_and_wait(page, "digits", "1,8,8")
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_function("!document.querySelector('#panel-body').hasAttribute('aria-busy')")
    assert _panel_is_empty(page), page.inner_text("#panel")


def test_a_late_summary_of_the_model_picked_before_is_dropped(page):
    """Pick resnet18, then seed before resnet18's summary arrives: the page shows seed's
    architecture (it had shown resnet18's 69 layers over seed's feature maps)."""
    held = []
    page.route("**/api/models/zoo*resnet18/summary", lambda route: held.append(route))
    page.select_option("#model-select", "zoo:resnet18")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    _pick_and_wait(page, "zoo:seed", "1,28,28")
    seed = page.inner_text("#arch-totals")
    assert seed.startswith("3 layers")
    held[0].continue_()
    page.wait_for_timeout(500)
    assert page.inner_text("#arch-totals") == seed
    assert page.evaluate("window.convscope.summary.layers.length") == 3


def test_keyboard_explains_cells_and_round_trip_time(page, server):
    canvas = page.locator("canvas.map[data-layer='0'][data-channel='3']")
    canvas.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#panel-body h3') && "
                           "document.querySelector('#panel-body h3').textContent.includes('[0, 3, 1, 1]')")
    assert float(page.get_attribute("#panel-sum", "data-value")) == api_trace(
        server, "0", [0, 3, 1, 1], {"source": "digit", "digit": 0})["value"]
    times = []
    for k in range(12):  # click-to-explanation on the digits model: request, trace, drawing the panel
        layer = ("0", "2", "4")[k % 3]
        before = page.evaluate("window.convscope.timings.trace.length")
        page.click(f"canvas.map[data-layer='{layer}'][data-channel='{k}']", position={"x": 10 + 3 * k, "y": 20})
        page.wait_for_function(f"window.convscope.timings.trace.length > {before}")
        times.append(page.evaluate("window.convscope.timings.trace.at(-1)"))
    times.sort()
    quartile = statistics.quantiles(times, n=4)[0]
    print(f"\nclick-to-explanation (ms): lower quartile {quartile:.0f}, median {statistics.median(times):.0f}, "
          f"max {times[-1]:.0f}, all {[round(t) for t in times]}")
    # the lower quartile: other processes on a shared machine only ever add time, never remove it
    assert quartile < 100


def test_draw_a_digit_with_mouse_and_touch(page, shots):
    page.locator("#draw").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + 80, y0 + 50)
    page.mouse.down()
    for x, y in [(170, 50), (170, 60), (120, 130), (95, 215)]:  # a 7
        page.mouse.move(x0 + x, y0 + y, steps=6)
    page.mouse.up()
    page.wait_for_function("/^[0-9]$/.test(document.querySelector('#prediction').textContent)")
    assert page.locator("#probabilities li").count() == 10
    assert page.input_value("#input-source") == "drawing"
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "draw.png"))
    page.click("#pad-clear")
    before = page.evaluate("window.convscope.timings.predict.length")
    page.evaluate("""() => {  // a finger: touch pointer events
        const pad = document.querySelector('#pad'), r = pad.getBoundingClientRect();
        const fire = (type, x, y) => pad.dispatchEvent(new PointerEvent(type, {pointerType: 'touch', pointerId: 7,
            isPrimary: true, bubbles: true, clientX: r.left + x, clientY: r.top + y}));
        fire('pointerdown', 128, 30);
        for (let y = 30; y <= 220; y += 10) fire('pointermove', 128, y);
        fire('pointerup', 128, 220);
    }""")
    page.wait_for_function(f"window.convscope.timings.predict.length > {before}")
    inked = page.evaluate("""() => {
        const d = document.querySelector('#pad').getContext('2d').getImageData(120, 100, 16, 16).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] < 128; return n; }""")
    assert inked > 100  # the touch stroke was drawn
    assert re.fullmatch(r"[0-9]", page.inner_text("#prediction"))


def test_playground_output_size_and_rules(page, shots):
    page.locator("#playground").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#pg-output-size').textContent === '2 × 6 × 6'")
    page.fill("input[name=kernel_h]", "5")
    # (6 + 2·1 − 5)/1 + 1 = 4 rows; the width keeps its 3-wide kernel: 6
    page.wait_for_function("document.querySelector('#pg-output-size').textContent === '2 × 4 × 6'")
    assert "⌊(6 + 2·1 − 1·(5 − 1) − 1) / 1⌋ + 1 = ⌊3 / 1⌋ + 1 = 4" in page.inner_text("#pg-formulas")
    page.fill("input[name=stride_w]", "2")
    page.wait_for_function("document.querySelector('#pg-output-size').textContent === '2 × 4 × 3'")
    page.click("#pg-next")
    assert page.inner_text("#pg-frame-label").startswith("2 / ")
    assert "→" in page.inner_text("#pg-sums")
    page.screenshot(path=str(shots / "playground.png"))
    page.fill("input[name=groups]", "3")
    page.wait_for_function("document.querySelector('#pg-output-size').textContent === 'invalid'")
    assert "divisible by groups" in page.inner_text("#pg-error")
