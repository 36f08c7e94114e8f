"""The server's documented bounds: request sizes and the compute one request may ask for.

Every bound is a field of :class:`Limits` (``create_app(limits=Limits(...))`` changes them;
``convscope serve --max-macs`` the compute cap). A request over a bound gets a 4xx whose
message names the bound, the number asked for and the limit; nothing is computed first.

========================  ==============  =====================================================
bound                     default         what it caps
========================  ==============  =====================================================
``max_json_bytes``        1 MiB           the body of a JSON request (413 above it)
``max_spec_bytes``        64 KiB          the text of an uploaded spec (413)
``max_onnx_bytes``        16 MiB          an uploaded ONNX file (413)
``max_spec_layers``       1,000           layers of a spec after unrolling ``repeat`` (422)
``max_macs``              2.5·10⁹         multiply-accumulates of one forward pass, estimated
                                          by ``summary`` on meta tensors before running (422)
``max_params``            64·10⁶          parameters of a model the server builds and runs (422)
``max_input_values``      2²⁰             values of one model input (422)
``max_response_values``   2²¹             feature-map values returned by one request; larger
                                          layers are sent channel by channel (``/activations``)
``max_trace_terms``       20,000          terms of a traced weighted sum sent in full (the
                                          rest is summarised; value and sum are always sent)
``max_uploads``           16              uploaded models kept (least recently used dropped)
``max_built``             4               zoo models kept built with their random weights
``explain_seconds``       10 s            wall time of one ``explain`` computation (422)
``explain_memory_bytes``  2 GiB           address space of the ``explain`` worker process
``max_playground_size``   1,024           input size and channels in the playground (422)
``max_animation_frames``  64              kernel positions traced for the playground animation
========================  ==============  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Size and compute bounds of one server (see the module docstring for the table)."""

    max_json_bytes: int = 1 * MiB
    max_spec_bytes: int = 64 * 1024
    max_onnx_bytes: int = 16 * MiB
    max_spec_layers: int = 1_000
    max_macs: int = 2_500_000_000
    max_params: int = 64_000_000
    max_input_values: int = 1 << 20
    max_response_values: int = 1 << 21
    max_trace_terms: int = 20_000
    max_uploads: int = 16
    max_built: int = 4
    explain_seconds: float = 10.0
    explain_memory_bytes: int = 2 << 30
    max_playground_size: int = 1_024
    max_animation_frames: int = 64

    def to_dict(self) -> dict[str, float]:
        """The bounds as JSON (``GET /api/limits``)."""
        return dict(vars(self))

