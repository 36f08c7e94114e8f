"""The web explorer's JSON API (FastAPI TestClient): every endpoint, good and bad input.

Numbers are checked against torch (the same trained weights run by torch), hand arithmetic
(shapes, parameter counts, receptive boxes) or numpy written independently here; every bad
request must be a 4xx naming the field, and the server must keep serving after it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from convscope import zoo  # noqa: E402
from convscope.data import digits  # noqa: E402
from convscope.pretrained import pretrained, weights  # noqa: E402
from convscope.trace import trace as cs_trace  # noqa: E402
from convscope.web import create_app  # noqa: E402
from convscope.web.encode import unpack  # noqa: E402
from convscope.web.limits import Limits  # noqa: E402

SPEC = "input 1x8x8\nconv 4 k3\nrelu\nflatten\nlinear 3\n"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Limits(explain_seconds=20))) as c:
        yield c


@pytest.fixture(scope="module")
def torch_digits():
    """The shipped digits CNN, run by torch with the same weights."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(512, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights("digits").items()})
    return net.eval()


def torch_outputs(net, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output of a torch Sequential (float64 for comparing float32 engines)."""
    outs, h = [], torch.from_numpy(x)
    with torch.no_grad():
        for layer in net:
            h = layer(h)
            outs.append(h.numpy().copy())
    return outs


def refused(response, status: int, field: str | None, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "field"}, body
    assert body["field"] == field, body
    for word in words:
        assert word in body["message"], body["message"]
    return body


def still_serving(client) -> None:
    assert client.get("/api/models").status_code == 200


# --- models and summaries ----------------------------------------------------------------------
def test_models_lists_digits_and_the_whole_zoo(client):
    data = client.get("/api/models").json()
    ids = [m["id"] for m in data["models"]]
    assert data["default"] == "digits" and ids[0] == "digits"
    assert ids[1:1 + len(zoo.names())] == [f"zoo:{n}" for n in zoo.names()]
    assert data["models"][0]["input_shape"] == [1, 8, 8]


def test_summary_of_digits_matches_hand_counts(client):
    s = client.get("/api/models/digits/summary").json()
    rows = {r["name"]: r for r in s["layers"]}
    assert s["runnable"] == {"ok": True, "reason": None}
    assert s["totals"]["params"] == (32 * 1 * 9 + 32) + (32 * 32 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
    assert rows["2"]["weight_shape"] == [32, 32, 3, 3] and rows["2"]["params"] == 9248
    assert rows["0"]["macs"] == 32 * 8 * 8 * 1 * 9  # outputs × C_in × kernel
    assert rows["4"]["output_shape"] == [1, 32, 4, 4] and rows["5"]["output_shape"] == [1, 512]


def test_a_model_over_the_compute_cap_is_summarised_but_not_run(client):
    s = client.get("/api/models/zoo:vgg16/summary").json()
    assert s["totals"]["params"] == 138_357_544  # VGG-16, Simonyan & Zisserman
    assert not s["runnable"]["ok"] and "MACs" in s["runnable"]["reason"]
    refused(client.post("/api/models/zoo:vgg16/run", json={}), 422, "model_id", "MACs", "2.50G")
    still_serving(client)


def test_unknown_model_is_a_404_naming_the_id(client):
    refused(client.get("/api/models/zoo:nope/summary"), 404, "model_id", "'zoo:nope'")
    refused(client.post("/api/models/spec:000000000000/run", json={}), 404, "model_id")
    still_serving(client)


# --- running ---------------------------------------------------------------------------------------
def test_run_gives_every_layer_as_torch_computes_it(client, torch_digits):
    images, _ = digits("test")
    data = client.post("/api/models/digits/run", json={"input": {"source": "digit", "digit": 7}}).json()
    want = torch_outputs(torch_digits, images[7:8])
    assert [layer["name"] for layer in data["layers"]] == [str(i) for i in range(9)]
    assert [layer["input_from"] for layer in data["layers"]] == ["input", "0", "1", "2", "3", "4", "5", "6", "7"]
    np.testing.assert_array_equal(unpack(data["input"]), images[7])
    for layer, expected in zip(data["layers"], want):
        np.testing.assert_allclose(unpack(layer["map"]), expected[0], rtol=2e-5, atol=2e-5 * np.abs(expected).max())
    probs = torch.softmax(torch.from_numpy(want[-1]).double(), 1).numpy()[0]
    np.testing.assert_allclose(data["probabilities"], probs, atol=1e-6)
    assert data["prediction"] == int(want[-1].argmax())


def test_run_random_and_values_inputs(client):
    x = np.random.default_rng(3).random((1, 8, 8))
    a = client.post("/api/models/digits/run", json={"input": {"source": "values", "values": x.ravel().tolist()}})
    np.testing.assert_allclose(unpack(a.json()["input"]), x, atol=1e-7)
    b = client.post("/api/models/digits/run", json={"input": {"source": "random", "seed": 5}, "maps": False}).json()
    np.testing.assert_allclose(unpack(b["input"]), np.random.default_rng(5).random((1, 8, 8)), atol=1e-7)
    assert all(layer["map"] is None for layer in b["layers"])


def test_run_bad_inputs(client):
    refused(client.post("/api/models/digits/run", json={"input": {"source": "digit", "digit": 10_000}}), 422,
            "input.digit", "out of range", "359")
    refused(client.post("/api/models/digits/run", json={"input": {"source": "values", "values": [1, 2]}}), 422,
            "input.values", "64", "got 2")
    refused(client.post("/api/models/digits/run", json={"input": {"source": "photo"}}), 422, "input.source")
    refused(client.post("/api/models/digits/run", json={"input": {"source": "digit", "digit": -1}}), 422,
            "input.digit")
    refused(client.post("/api/models/digits/run", content=b"{not json", headers={"content-type": "application/json"}),
            422, "body")
    still_serving(client)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")  # the edge run
def test_values_that_overflow_the_model_dtype_are_refused(client):
    """Finite as JSON (float64) but infinite once cast to the model's float32: refused by
    every endpoint that runs a model on client values, not run into infinities."""
    top = float(np.finfo(np.float32).max)
    huge = {"source": "values", "values": [1e308] * 64}
    for path, extra in (("run", {"maps": False}), ("activations", {"layer": "0"}),
                        ("trace", {"layer": "0", "index": [0, 0, 0, 0]})):
        refused(client.post(f"/api/models/digits/{path}", json={"input": huge, **extra}), 422, "input.values",
                "64 of 64 values overflow float32", "3.4e+38")
    some = [0.0] * 61 + [-1e39, 1e39, 3.5e38]
    refused(client.post("/api/models/digits/run", json={"input": {"source": "values", "values": some}}), 422,
            "input.values", "3 of 64 values overflow float32")
    edge = client.post("/api/models/digits/run",  # the largest float32 itself is accepted, sent back unchanged
                       json={"input": {"source": "values", "values": [top] + [0.0] * 63}, "maps": False})
    assert edge.status_code == 200, edge.text
    assert unpack(edge.json()["input"])[0, 0, 0] == np.float32(top)
    still_serving(client)


def test_activations_of_one_layer(client, torch_digits):
    images, _ = digits("test")
    data = client.post("/api/models/digits/activations",
                       json={"input": {"source": "digit", "digit": 2}, "layer": "4", "channels": [3, 5]}).json()
    want = torch_outputs(torch_digits, images[2:3])[4][0, 3:5]
    assert data["shape"] == [1, 32, 4, 4] and data["channels"] == [3, 5]
    np.testing.assert_allclose(unpack(data["map"]), want, rtol=2e-5, atol=1e-5)
    refused(client.post("/api/models/digits/activations", json={"layer": "4", "channels": [30, 40]}), 422,
            "channels", "32 channels")
    refused(client.post("/api/models/digits/activations", json={"layer": "conv9"}), 422, "layer", "no layer")
    still_serving(client)


def test_predict_averages_4x4_blocks_and_runs_the_digits_cnn(client, torch_digits):
    bitmap = np.zeros((32, 32))
    bitmap[4:28, 14:19] = 1  # a vertical bar
    data = client.post("/api/predict", json={"pixels": bitmap.ravel().tolist()}).json()
    blocks = bitmap.reshape(8, 4, 8, 4).mean(axis=(1, 3))  # the UCI recipe: counts of 4×4 blocks / 16
    np.testing.assert_allclose(np.reshape(data["digit"], (8, 8)), blocks, atol=1e-7)
    logits = torch_outputs(torch_digits, blocks.astype(np.float32)[None, None])[-1]
    assert data["prediction"] == int(logits.argmax())
    np.testing.assert_allclose(data["probabilities"], torch.softmax(torch.from_numpy(logits).double(), 1)[0],
                               atol=1e-6)
    refused(client.post("/api/predict", json={"pixels": [0.5] * 100}), 422, "input.pixels", "1024", "got 100")
    refused(client.post("/api/predict", json={"pixels": [2.0] * 1024}), 422, "input.pixels", "[0, 1]")
    refused(client.post("/api/predict", json={}), 422, "pixels")
    still_serving(client)


# --- tracing ---------------------------------------------------------------------------------------
def test_trace_of_a_conv_value_matches_torch_and_its_terms(client, torch_digits):
    images, _ = digits("test")
    t = client.post("/api/models/digits/trace", json={"input": {"source": "digit", "digit": 4}, "layer": "2",
                                                      "index": [0, 5, 3, 4]}).json()
    want = torch_outputs(torch_digits, images[4:5])
    assert t["value"] == pytest.approx(float(want[2][0, 5, 3, 4]), abs=1e-5)
    assert t["input_from"] == "1" and t["type"] == "Conv2d"
    assert len(t["step"]["terms"]) == t["terms_total"] == 32 * 9
    reads = np.array([term["read"]["value"] for term in t["step"]["terms"]])
    cells = [term["read"]["index"] for term in t["step"]["terms"]]
    relu1 = want[1][0]
    np.testing.assert_allclose(reads, [relu1[c, y, x] for _, c, y, x in cells], rtol=1e-6, atol=1e-6)
    assert sum(c["sum"] for c in t["channel_sums"]) + t["step"]["bias"] == pytest.approx(t["value"], abs=1e-5)
    assert t["product_sum"] + t["step"]["bias"] == pytest.approx(t["value"], abs=1e-5)
    # two 3×3 convs with padding 1: a 5×5 box around (3, 4), inside the 8×8 input
    assert t["influence"]["receptive_box"] == [[0, 0], [0, 0], [1, 5], [2, 6]]
    assert t["influence"]["count"] == 25
    assert unpack(t["influence"]["mask"]).sum() == 25


def test_trace_of_a_max_pool_names_the_winner(client, torch_digits):
    images, _ = digits("test")
    t = client.post("/api/models/digits/trace", json={"input": {"source": "digit", "digit": 0}, "layer": "4",
                                                      "index": [0, 9, 1, 2]}).json()
    relu2 = torch_outputs(torch_digits, images[0:1])[3][0, 9]
    window = relu2[2:4, 4:6]
    assert t["step"]["kind"] == "max" and t["input_from"] == "3"
    assert [r["index"] for r in t["step"]["reads"]] == [[0, 9, 2, 4], [0, 9, 2, 5], [0, 9, 3, 4], [0, 9, 3, 5]]
    assert t["value"] == pytest.approx(float(window.max()), abs=1e-6)
    assert t["step"]["reads"][t["step"]["winner"]]["value"] == pytest.approx(float(window.max()), abs=1e-6)


def test_strongest_read_walks_the_strongest_path_back_to_the_input(client):
    images, _ = digits("test")
    expected = cs_trace(pretrained("digits"), images[3:4], "8", (0, 2)).path()
    layer, index, walked = "8", [0, 2], []
    while layer != "input":
        t = client.post("/api/models/digits/trace", json={"input": {"source": "digit", "digit": 3}, "layer": layer,
                                                          "index": index, "influence": False}).json()
        walked.append((t["layer"], t["index"], t["value"]))
        layer, index = t["strongest"]["layer"], t["strongest"]["index"]
    assert walked == [(hop.layer, list(hop.index), hop.value) for hop in expected]


def test_a_padding_layer_steps_into_the_cell_it_copied(client):
    spec = "input 1x8x8\nconv 4 k3 p1 name=stem\nreflectpad 2 name=padded\nconv 2 k3 name=head\nflatten\nlinear 3"
    model = client.post("/api/models/spec", json={"text": spec, "name": "padded"}).json()["model"]["id"]
    t = client.post(f"/api/models/{model}/trace", json={"layer": "padded", "index": [0, 1, 0, 0],
                                                         "influence": False}).json()
    read = t["step"]["read"]
    assert (read["index"], read["padding"], read["source"]) == ([0, 1, -2, -2], "reflect", [0, 1, 2, 2])
    assert t["input_from"] == "stem" and t["strongest"] == {"layer": "stem", "index": [0, 1, 2, 2]}
    stem = client.post(f"/api/models/{model}/trace", json={"layer": "stem", "index": [0, 1, 2, 2],
                                                            "influence": False}).json()
    assert stem["value"] == t["value"]


def test_trace_bad_requests_name_the_field(client):
    url = "/api/models/digits/trace"
    refused(client.post(url, json={"layer": "2", "index": [0, 32, 0, 0]}), 422, "index", "out of range", "size 32")
    refused(client.post(url, json={"layer": "2", "index": [0, 1, 2]}), 422, "index", "4 ints")
    refused(client.post(url, json={"layer": "conv2", "index": [0, 1, 2, 3]}), 422, "layer", "no layer 'conv2'")
    refused(client.post(url, json={"layer": "", "index": [0, 1]}), 422, "layer")
    refused(client.post(url, json={"layer": "2", "index": "0,1,2,3"}), 422, "index")
    refused(client.post(url, json={"index": [0, 1, 2, 3]}), 422, "layer")
    still_serving(client)


def test_a_layer_called_twice_is_named_and_traced_per_call(client):
    """torchvision's BasicBlock calls its ReLU twice: before and after the residual addition."""
    run = client.post("/api/models/zoo:resnet18/run", json={"maps": False}).json()
    feeds = {layer["name"]: layer["input_from"] for layer in run["layers"]}
    assert feeds["layer1.0.relu"] == "layer1.0.bn1"
    assert feeds["layer1.0.relu#2"] == "layer1.0.add"  # the residual addition in BasicBlock.forward
    assert feeds["layer1.1.conv1"] == "layer1.0.relu#2"
    t = client.post("/api/models/zoo:resnet18/trace", json={"layer": "layer1.0.relu#2", "index": [0, 3, 10, 10],
                                                             "influence": False}).json()
    maps = client.post("/api/models/zoo:resnet18/activations", json={"layer": "layer1.0.relu#2",
                                                                     "channels": [3, 4]}).json()
    assert t["layer"] == "layer1.0.relu#2" and t["call"] == 1
    assert t["value"] == float(unpack(maps["map"])[0, 10, 10])
    refused(client.post("/api/models/zoo:resnet18/trace", json={"layer": "layer1.0.relu#0", "index": [0, 0, 0, 0]}),
            422, "layer", "1 or more")


def test_residual_additions_are_traced_to_the_layers_they_add(client):
    """MobileNet v2's block output is its own addition: the next layer reads the block, whose
    trace names both operands' layers; ResNet's ReLU after ``out += identity`` shows the sum."""
    run = client.post("/api/models/zoo:mobilenet_v2/run", json={"maps": False}).json()
    feeds = {layer["name"]: layer["input_from"] for layer in run["layers"]}
    assert feeds["features.4.conv.0.0"] == "features.3" and feeds["features.3.conv.0.0"] == "features.2.conv.3"
    index = [0, 5, 20, 30]
    t = client.post("/api/models/zoo:mobilenet_v2/trace", json={"layer": "features.3", "index": index,
                                                                 "influence": False}).json()
    step = t["step"]
    assert step["kind"] == "combination" and step["symbol"] == "+" and t["terms_total"] == 2
    assert [o["name"] for o in step["operands"]] == ["features.2.conv.3", "features.3.conv.3"]
    values = []
    for operand in step["operands"]:
        maps = client.post("/api/models/zoo:mobilenet_v2/activations",
                           json={"layer": operand["name"], "channels": [5, 6]}).json()
        assert operand["read"]["value"] == float(unpack(maps["map"])[0, 20, 30])
        values.append(operand["read"]["value"])
    assert t["value"] == pytest.approx(sum(values), rel=1e-6)
    relu = client.post("/api/models/zoo:resnet18/trace", json={"layer": "layer1.0.relu#2", "index": [0, 3, 10, 10],
                                                                "influence": False}).json()["step"]
    assert [o["name"] for o in relu["made"]["operands"]] == ["layer1.0.bn2", "maxpool"]
    assert relu["read"]["value"] == pytest.approx(sum(o["read"]["value"] for o in relu["made"]["operands"]), rel=1e-6)
    added = client.post("/api/models/zoo:resnet18/trace", json={"layer": "layer1.0.add", "index": [0, 3, 10, 10],
                                                                 "influence": False}).json()  # its input_from
    assert added["type"] == "add" and added["value"] == relu["read"]["value"]
    assert added["step"]["operands"] == relu["made"]["operands"]


def test_op_rows_and_blocks_name_what_their_reads_index(client):
    """``input_from`` comes from the trace, so an op row or a block whose value is not a sum
    leads one step back too: MobileNet v2's top-level pool and the flatten of its output read
    ``features``' last layer (they had none: the page's panel was a dead end); ShuffleNet's
    block, a copy of its concatenation, names the operand the value came from."""
    url = "/api/models/zoo:mobilenet_v2/trace"
    flat = client.post(url, json={"layer": "reshape", "index": [0, 7], "influence": False}).json()
    pool = client.post(url, json={"layer": "adaptive_avg_pool2d", "index": [0, 7, 0, 0], "influence": False}).json()
    assert flat["step"] == pool["step"] and flat["value"] == pool["value"]  # computed by the pool before it
    assert pool["step"]["kind"] == "mean" and flat["input_from"] == pool["input_from"] == "features.18.2"
    read = pool["step"]["reads"][5]
    back = client.post(url, json={"layer": pool["input_from"], "index": read["index"], "influence": False}).json()
    assert back["value"] == read["value"]
    shuffle = client.post("/api/models/zoo:shufflenet_v2_x0_5/trace",  # the block's output is a shuffled cat
                          json={"layer": "stage2.1", "index": [0, 3, 2, 2], "influence": False}).json()
    assert shuffle["step"]["kind"] == "copy" and shuffle["input_from"] == shuffle["step"]["source"]["name"]


def test_a_global_mean_in_forward_is_stepped_through_as_ops(client):
    """ShuffleNet v2 ends in ``x.mean([2, 3])``: its classifier reads op ``div``, whose
    dividend is op ``sum``, whose values are ``conv5.2``'s."""
    run = client.post("/api/models/zoo:shufflenet_v2_x0_5/run", json={"maps": False}).json()
    assert {layer["name"]: layer["input_from"] for layer in run["layers"]}["fc"] == "div"
    mean = client.post("/api/models/zoo:shufflenet_v2_x0_5/trace", json={"layer": "div", "index": [0, 7],
                                                                          "influence": False}).json()
    dividend, divisor = mean["step"]["operands"]
    assert (dividend["origin"], dividend["name"], divisor["read"]["value"]) == ("op", "sum", 49)
    total = client.post("/api/models/zoo:shufflenet_v2_x0_5/trace", json={"layer": "sum", "index": [0, 7],
                                                                           "influence": False}).json()
    step = total["step"]
    assert step["kind"] == "sum" and step["source"]["name"] == "conv5.2" and len(step["reads"]) == 49
    assert total["value"] == dividend["read"]["value"] and total["terms_total"] == 49
    maps = client.post("/api/models/zoo:shufflenet_v2_x0_5/activations",
                       json={"layer": "conv5.2", "channels": [7, 8]}).json()
    assert sorted(r["value"] for r in step["reads"]) == sorted(unpack(maps["map"])[0].ravel().tolist())


# --- uploads: specs --------------------------------------------------------------------------------
def test_spec_upload_builds_runs_and_traces(client):
    r = client.post("/api/models/spec", json={"text": SPEC, "name": "tiny"})
    assert r.status_code == 201, r.text
    model, summary = r.json()["model"], r.json()["summary"]
    assert model["id"].startswith("spec:") and model["input_shape"] == [1, 8, 8]
    rows = {row["name"]: row for row in summary["layers"]}
    assert rows["conv1"]["output_shape"] == [1, 4, 6, 6] and rows["conv1"]["params"] == 4 * 9 + 4
    assert rows["fc1"]["weight_shape"] == [3, 144]
    again = client.post("/api/models/spec", json={"text": SPEC, "name": "tiny"}).json()["model"]["id"]
    assert again == model["id"]  # the same text gets the same id
    run = client.post(f"/api/models/{model['id']}/run", json={"input": {"source": "digit", "digit": 1}}).json()
    assert [layer["name"] for layer in run["layers"]] == ["conv1", "relu1", "flatten1", "fc1"]
    t = client.post(f"/api/models/{model['id']}/trace", json={"input": {"source": "digit", "digit": 1},
                                                               "layer": "fc1", "index": [0, 2]}).json()
    assert t["value"] == pytest.approx(unpack(run["layers"][3]["map"])[2], abs=1e-5)
    assert t["input_from"] == "flatten1" and t["terms_total"] == 144
    assert any(m["id"] == model["id"] for m in client.get("/api/models").json()["models"])


def test_malformed_specs_are_422_with_line_and_column(client):
    body = refused(client.post("/api/models/spec", json={"text": "input 1x8x8\nconv 4 k3\nconv 2 k9\n"}), 422,
                   "text", "spec:3:1", "spans 9")
    assert "Traceback" not in body["message"]
    refused(client.post("/api/models/spec", json={"text": "input 1x8x8\nconvolution 4\n"}), 422, "text", "spec:2:")
    refused(client.post("/api/models/spec", json={"text": "input 1x8x8\nrepeat 3 {\nrelu\n"}), 422, "text")
    refused(client.post("/api/models/spec", json={"text": 5}), 422, "text")
    still_serving(client)


def test_a_spec_is_text_never_a_path(client, tmp_path):
    secret = tmp_path / "secret.spec"
    secret.write_text("input 1x8x8\nconv 2 k3\n")
    body = refused(client.post("/api/models/spec", json={"text": str(secret)}), 422, "text")
    assert "input" in body["message"]  # parsed as a spec line, the file was not read
    refused(client.post("/api/models/spec", json={"text": "/etc/passwd"}), 422, "text")


def test_spec_size_and_compute_bounds(client):
    refused(client.post("/api/models/spec", json={"text": "relu\n" * 20_000}), 413, "text", "65,536")
    bomb = "input 1x8x8\nrepeat 100000 {\nrepeat 100000 {\nrelu\n}\n}\n"
    refused(client.post("/api/models/spec", json={"text": bomb}), 422, "text", "1,000 layers")
    huge = client.post("/api/models/spec", json={"text": "input 1x8x8\nflatten\nlinear 1000000\n"})
    assert huge.status_code == 201  # built with meta parameters: nothing was allocated
    assert huge.json()["summary"]["totals"]["params"] == 64 * 1_000_000 + 1_000_000
    refused(client.post(f"/api/models/{huge.json()['model']['id']}/run", json={}), 422, "model_id", "parameters")
    still_serving(client)


def test_uploads_are_kept_in_a_bounded_store():
    with TestClient(create_app(Limits(max_uploads=2))) as c:
        ids = [c.post("/api/models/spec", json={"text": f"input 1x4x4\nconv {k} k3\n"}).json()["model"]["id"]
               for k in (1, 2, 3)]
        assert c.get(f"/api/models/{ids[0]}/summary").status_code == 404  # the oldest was dropped
        assert c.get(f"/api/models/{ids[2]}/summary").status_code == 200


# --- uploads: ONNX ---------------------------------------------------------------------------------
def _onnx_model(op: str = "Relu", batch: int | str = 1, external: bool = False) -> tuple[bytes, np.ndarray]:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32)
    weight = numpy_helper.from_array(w, "w")
    if external:
        weight.data_location = TensorProto.EXTERNAL
        weight.ClearField("raw_data")
        weight.external_data.add(key="location", value="/etc/passwd")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node(op, ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString(), w


def test_onnx_input_shape_is_checked_against_the_graph(client):
    """The graph's input is N×1×5×5: input_shape gives its sizes without the batch. 1x1x5x5 (with the
    batch) had been accepted, listed as input 1×1×5×5, and every run then failed on a 5-d input."""
    symbolic, _ = _onnx_model(batch="N")
    r = client.post("/api/models/onnx?input_shape=1x5x5", content=symbolic)
    assert r.status_code == 201 and r.json()["model"]["input_shape"] == [1, 5, 5]
    refused(client.post("/api/models/onnx?input_shape=1x1x5x5", content=symbolic), 422, "input_shape",
            "'x' is ?×1×5×5 (4 dims with the batch); expected its 3 sizes without the batch, got '1x1x5x5'")
    refused(client.post("/api/models/onnx?input_shape=5x5", content=symbolic), 422, "input_shape", "got '5x5'")


def test_onnx_upload_runs_like_torch(client):
    data, w = _onnx_model()
    r = client.post("/api/models/onnx?name=tiny.onnx", content=data,
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    model_id = r.json()["model"]["id"]
    assert r.json()["model"]["input_shape"] == [1, 5, 5]
    x = np.random.default_rng(1).random((1, 1, 5, 5))
    run = client.post(f"/api/models/{model_id}/run",
                      json={"input": {"source": "values", "values": x.ravel().tolist()}}).json()
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w),
                                                 padding=1)).numpy()
    np.testing.assert_allclose(unpack(run["output"]), want, rtol=1e-5, atol=1e-5)


def test_onnx_bad_uploads(client):
    unsupported, _ = _onnx_model("Sin")
    refused(client.post("/api/models/onnx", content=unsupported), 422, "body", "Sin")
    refused(client.post("/api/models/onnx", content=b"\x00garbage\xff"), 422, "body", "not a readable ONNX")
    refused(client.post("/api/models/onnx", content=b""), 422, "body")
    external, _ = _onnx_model(external=True)
    refused(client.post("/api/models/onnx", content=external), 422, "body", "external")
    symbolic, _ = _onnx_model(batch="N")
    assert client.post("/api/models/onnx", content=symbolic).status_code == 201  # batch may be symbolic
    big = b"\x00" * (16 * 2**20 + 1)
    refused(client.post("/api/models/onnx", content=big), 413, "body", "16,777,216")
    refused(client.post("/api/models/onnx?input_shape=1x-5", content=symbolic), 422, "input_shape")
    still_serving(client)


# --- the playground --------------------------------------------------------------------------------
CONFIGS = [  # (C_in, C_out, size, kernel, stride, padding, dilation, groups, transposed, output_padding)
    (2, 2, (6, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1, False, (0, 0)),
    (3, 6, (11, 7), (5, 3), (2, 1), (2, 0), (1, 2), 3, False, (0, 0)),
    (4, 4, (9, 9), (3, 3), (3, 3), (0, 0), (2, 2), 4, False, (0, 0)),
    (2, 3, (5, 4), (3, 2), (2, 3), (1, 0), (1, 1), 1, True, (1, 2)),
    (4, 2, (3, 3), (4, 4), (2, 2), (1, 1), (2, 1), 2, True, (1, 0)),
]


def _request(cfg) -> dict:
    cin, cout, size, kernel, stride, padding, dilation, groups, transposed, extra = cfg
    return {"in_channels": cin, "out_channels": cout, "size": size, "kernel": kernel, "stride": stride,
            "padding": padding, "dilation": dilation, "groups": groups, "transposed": transposed,
            "output_padding": extra}


def _torch_layer(cfg):
    cin, cout, _, kernel, stride, padding, dilation, groups, transposed, extra = cfg
    if transposed:
        return torch.nn.ConvTranspose2d(cin, cout, kernel, stride, padding, extra, groups, dilation=dilation)
    return torch.nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_playground_sizes_and_params_match_torch(client, cfg):
    data = client.post("/api/playground", json=_request(cfg)).json()
    layer = _torch_layer(cfg)
    out = layer(torch.zeros(1, cfg[0], *cfg[2]))
    assert data["ok"] and data["output_shape"] == list(out.shape)
    assert data["params"] == sum(p.numel() for p in layer.parameters())
    assert [f["value"] for f in data["formulas"]] == list(out.shape[2:])
    assert [f["formula_value"] for f in data["formulas"]] == list(out.shape[2:])
    assert data["formulas"][0]["numbers"].endswith(f"= {out.shape[2]}")


@pytest.mark.parametrize("cfg", CONFIGS)
def test_playground_animation_is_the_convolution(client, cfg):
    a = client.post("/api/playground", json=_request(cfg) | {"channel": 1}).json()["animation"]
    layer = _torch_layer(cfg).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(a["weight"]))
        layer.bias.copy_(torch.tensor(a["bias"]))
        want = layer(torch.tensor(a["input"], dtype=torch.float64)[None])[0].numpy()
    np.testing.assert_allclose(a["output"], want, atol=1e-12)
    assert a["channel"] == 1 and len(a["frames"]) == min(64, want[1].size)
    for frame in a["frames"]:
        i, j = frame["out"]
        assert frame["value"] == want[1, i, j]
        assert sum(frame["channel_sums"].values()) + frame["bias"] == pytest.approx(want[1, i, j], abs=1e-12)
        assert all(t[4] * t[5] == t[6] for t in frame["terms"])
    if cfg[7] == 1 and not cfg[8]:  # a plain conv: each input channel meets weight[channel, c]
        assert a["kernels"] == {str(c): a["weight"][1][c] for c in range(cfg[0])}


@pytest.mark.parametrize("change, rule", [
    ({"groups": 3}, "divisible by groups"),
    ({"kernel": [9, 9]}, "spans 9 > padded input 8"),
    ({"stride": [0, 1]}, "stride"),
    ({"padding": [-1, 0]}, "padding"),
    ({"transposed": True, "output_padding": [2, 2]}, "smaller than stride (1, 1)"),
])
def test_playground_invalid_settings_show_the_rule(client, change, rule):
    req = _request(CONFIGS[0]) | change
    data = client.post("/api/playground", json=req).json()
    assert data["ok"] is False and rule in data["error"]
    with pytest.raises((RuntimeError, ValueError)):  # torch refuses the same setting
        cfg = (req["in_channels"], req["out_channels"], tuple(req["size"]), tuple(req["kernel"]),
               tuple(req["stride"]), tuple(req["padding"]), (1, 1), req["groups"], req["transposed"],
               tuple(req["output_padding"]))
        _torch_layer(cfg)(torch.zeros(1, cfg[0], *cfg[2]))


def test_playground_bounds(client):
    refused(client.post("/api/playground", json={"size": [5000, 5]}), 422, "size", "1024")
    refused(client.post("/api/playground", json={"kernel": "big"}), 422, "kernel")
    big = client.post("/api/playground", json={"size": [200, 200], "in_channels": 64, "out_channels": 64}).json()
    assert big["ok"] and big["animation"] is None and "16×16" in big["animation_note"]


# --- explain ---------------------------------------------------------------------------------------
def test_explain_topics_and_an_answer(client):
    from convscope.explain import TOPICS

    topics = client.get("/api/explain").json()["topics"]
    assert [t["name"] for t in topics] == list(TOPICS)
    r = client.post("/api/explain/separable", json={"options": {"cin": 16, "cout": "32"}})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["ok"] and data["facts"]["cin"] == 16 and data["facts"]["cout"] == 32
    assert data["text"].startswith(data["title"])
    alias = client.post("/api/explain/output_size", json={"options": {"n": 10, "k": 3, "p": 1, "s": 2}}).json()
    assert alias["topic"] == "output-size" and alias["facts"]["out"] == 5  # ⌊(10 + 2 − 3)/2⌋ + 1


def test_explain_bad_requests(client):
    refused(client.post("/api/explain/nonsense", json={}), 404, "topic", "separable")
    refused(client.post("/api/explain/separable", json={"options": {"colour": 1}}), 422, "options.colour", "cin")
    refused(client.post("/api/explain/separable", json={"options": {"cin": "many"}}), 422, "options.cin", "int")
    refused(client.post("/api/explain/separable", json={"options": {"cin": [1]}}), 422, "options.cin")
    refused(client.post("/api/explain/stack", json={"options": {"input": "1x2048x2048", "layers": "conv 64 3x3"}}),
            422, "options")
    still_serving(client)


def test_explain_is_stopped_at_its_time_limit():
    with TestClient(create_app(Limits(explain_seconds=1.0))) as c:
        assert c.post("/api/explain/separable", json={}).status_code == 200  # warm: the worker has started
        slow = {"input": "1x1024x1024", "layers": "conv 16 3x3, relu, conv 16 3x3"}
        refused(c.post("/api/explain/stack", json={"options": slow}), 422, "options", "longer than", "1 s")
        assert c.post("/api/explain/separable", json={}).status_code == 200  # a new worker answers


# --- unknown fields ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, field, takes", [
    ("/api/explain/output-size", {"n": 2, "k": 5}, "n", "the body takes options"),  # options go under "options"
    ("/api/models/digits/run", {"map": False}, "map", "the body takes input, maps"),
    ("/api/models/digits/run", {"input": {"source": "digit", "colour": 1}}, "input.colour",
     "input takes source, digit, seed, pixels, values"),
    ("/api/models/digits/activations", {"layer": "0", "channel": [0, 1]}, "channel", "input, layer, channels"),
    ("/api/models/digits/trace", {"layer": "0", "index": [0, 0, 0, 0], "channels": [0, 1]}, "channels",
     "input, layer, index, influence"),
    ("/api/predict", {"pixels": [0.0] * 1024, "digit": 3}, "digit", "the body takes pixels"),
    ("/api/models/spec", {"text": SPEC, "title": "tiny"}, "title", "text, name"),
    ("/api/playground", {"kernal": [5, 5]}, "kernal", "kernel"),
])
def test_unknown_fields_are_refused_not_ignored(client, path, body, field, takes):
    refused(client.post(path, json=body), 422, field, f"{field}: unknown field", takes)
    still_serving(client)


# --- bounds, static files, docs, packaging ---------------------------------------------------------
def test_request_bodies_over_the_limit_are_413(client):
    big = json.dumps({"pixels": [0] * 600_000}).encode()
    refused(client.post("/api/predict", content=big, headers={"content-type": "application/json"}), 413, "body",
            "1,048,576")

    def chunks():
        for _ in range(300):
            yield b" " * 4096

    refused(client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"}), 413,
            "body", "at least")
    still_serving(client)


def test_page_static_files_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "convscope explorer" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    refused(client.get("/static/secret.txt"), 404, "name")
    assert client.get("/static/../../etc/passwd").status_code == 404
    docs = client.get("/docs")
    assert docs.status_code == 200 and "<script" not in docs.text and "http" not in docs.text.split("/openapi.json")[0]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/models", "/api/models/{model_id}/summary", "/api/models/spec", "/api/models/onnx",
                 "/api/models/{model_id}/run", "/api/models/{model_id}/trace", "/api/models/{model_id}/activations",
                 "/api/predict", "/api/playground", "/api/explain", "/api/explain/{topic}", "/api/limits"):
        assert path in paths and path in docs.text
    assert client.get("/api/limits").json()["max_macs"] == 2_500_000_000


def test_import_convscope_does_not_import_fastapi():
    code = ("import sys, convscope, convscope.web, convscope.web.cli; convscope.summary; "
            "print('fastapi' in sys.modules, 'uvicorn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_serve_command_binds_loopback_and_warns_otherwise(monkeypatch, capsys, tmp_path):
    import argparse

    import uvicorn

    from convscope.web.cli import add_cli, is_loopback

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: sockets[0].close())
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "0"])
    assert args.host == "127.0.0.1" and args.model == "digits"
    assert args.run(args) == 0
    out = capsys.readouterr()
    assert out.out.startswith("convscope explorer: http://127.0.0.1:") and out.err == ""
    args = parser.parse_args(["serve", "lenet5", "--port", "0", "--host", "0.0.0.0"])
    assert args.run(args) == 0
    assert "warning" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown zoo model 'lenet'"):
        args = parser.parse_args(["serve", "lenet", "--port", "0"])
        args.run(args)
    with pytest.raises(ValueError, match=r"is a folder without a training run's checkpoint\.npz; MODEL is 'digits'"):
        args = parser.parse_args(["serve", str(tmp_path), "--port", "0"])
        args.run(args)
    bad = tmp_path / "bad.spec"
    bad.write_text("input 1x8x8\nconv 4 k3 z\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(bad))}:2:11: conv takes 1 bare value"):
        args = parser.parse_args(["serve", str(bad), "--port", "0"])
        args.run(args)
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert parser.parse_args(["serve", "--max-macs", "2.5e9"]).max_macs == 2_500_000_000
    for bad in ("-5", "0", "0.5", "2.5", "nan", "inf", "lots"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--max-macs", bad])
        assert f"expected a whole number of MACs ≥ 1 such as 2.5e9, got '{bad}'" in capsys.readouterr().err


def test_serve_max_macs_sets_the_limit(monkeypatch):
    import uvicorn

    from convscope.cli import main

    served = []

    def run(self, sockets=None):
        served.append(self.config.app.state.store.limits.max_macs)
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["serve", "--port", "0", "--max-macs", "5e9"]) == 0
    assert served == [5_000_000_000]


def test_building_a_zoo_or_spec_model_leaves_the_global_random_state() -> None:
    """The store built zoo and spec models after ``manual_seed(0)`` and left the process's
    random state there; the weights are still those of seed 0."""
    from convscope import random as cs_random

    with TestClient(create_app()) as fresh:
        cs_random.manual_seed(123)
        before = repr(cs_random.get_rng_state())
        run = fresh.post("/api/models/zoo:lenet5_modern/run", json={"maps": False}).json()
        spec = fresh.post("/api/models/spec", json={"text": SPEC, "name": "tiny"}).json()["model"]["id"]
        fresh.post(f"/api/models/{spec}/run", json={"maps": False})
        assert repr(cs_random.get_rng_state()) == before
    cs_random.manual_seed(0)
    net = zoo.build("lenet5_modern").eval()
    x = unpack(run["input"])[None]
    np.testing.assert_allclose(unpack(run["output"]), net(x).numpy(), rtol=1e-5, atol=1e-6)
