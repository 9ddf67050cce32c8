"""``b2ner serve``: the model behind a small HTTP service on this machine.

A thin command: flags -> a :class:`ModelSpec`, a :class:`Task` and :class:`ServeSettings` -> the socket, the loaded
:class:`b2ner_cli.serve.Service`, the app -> serve until Ctrl-C.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from ..engine.base import DEFAULT_MAX_NEW_TOKENS
from ..models.placement import parse_max_memory
from ..models.spec import build_model_spec
from ..prompts import check_prompt_kind
from ..runs.labels import LabelSources, resolve_labels
from ..runs.recognizer import recognizer_kind
from ..runs.settings import DEFAULT_BATCH_SIZE, DEFAULT_BATCH_TOKENS, DEFAULT_CHUNK_TOKENS, ExtractSettings, Task
from ..serve.settings import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH_TEXTS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_TEXTS,
    DEFAULT_PORT,
    ServeSettings,
)
from .common import (
    AdapterOption,
    AdapterRevisionOption,
    BatchSizeOption,
    BatchTokensOption,
    CascadeAdapterOption,
    CascadeModeOption,
    CascadeOption,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    EngineOption,
    FlatOption,
    KeepRawOption,
    KnnKOption,
    KnnLambdaOption,
    KnnOption,
    KnnTemperatureOption,
    LabelsFileOption,
    LabelsOption,
    Lang,
    LangOption,
    MaxChunkTokensOption,
    MaxMemoryOption,
    MaxNewTokensOption,
    McSamplesOption,
    MergeOption,
    MinScoreOption,
    ModelOption,
    NoAdapterOption,
    OfflineOption,
    Quantize,
    QuantizeOption,
    QuietOption,
    RevisionOption,
    ThresholdOption,
    TrustRemoteCodeOption,
    Uncertainty,
    UncertaintyOption,
    boundary,
    knn_spec,
    note_printer,
    stderr_console,
)
from .render import RunView

EPILOG = """Needs the serve extra: pip install 'b2ner\\[serve]'. Requests arriving together are batched.

[bold]Examples[/]

  b2ner serve -m b2ner-7b --port 8080

  curl -s localhost:8080/extract -d '{"texts": ["Ada Lovelace was born in London."], "labels": ["person", "location"]}'

  b2ner serve -m ./my-tagger --host 0.0.0.0   # every address of this machine; labels from the tagger

  b2ner serve -m ./my-tagger --cascade b2ner-7b --threshold 0.4 --batch-wait-ms 20
"""


@boundary
def serve(
    model: ModelOption = None,
    adapter: AdapterOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens the service to the network.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one).")] = (
        DEFAULT_PORT
    ),
    batch_wait_ms: Annotated[
        float,
        typer.Option("--batch-wait-ms", min=0.0, help="How long a request waits for others to share its batch."),
    ] = DEFAULT_BATCH_WAIT_MS,
    max_batch_texts: Annotated[
        int,
        typer.Option("--max-batch-texts", min=1, help="Most texts, over all requests, in one batch (one window)."),
    ] = DEFAULT_MAX_BATCH_TEXTS,
    max_texts: Annotated[
        int, typer.Option("--max-texts", min=1, help="Most texts in one request (more: HTTP 413).")
    ] = DEFAULT_MAX_TEXTS,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=1, help="Most characters in one text (more: HTTP 413).")
    ] = DEFAULT_MAX_CHARS,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Most bytes in one request body (more: HTTP 413).")
    ] = DEFAULT_MAX_BODY_BYTES,
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
    lang: LangOption = Lang.auto,
    keep_raw: KeepRawOption = False,
    flat: FlatOption = False,
    min_score: MinScoreOption = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    batch_tokens: BatchTokensOption = None,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    max_chunk_tokens: MaxChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    revision: RevisionOption = None,
    adapter_revision: AdapterRevisionOption = None,
    no_adapter: NoAdapterOption = False,
    offline: OfflineOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
    quantize: QuantizeOption = Quantize.auto,
    max_memory: MaxMemoryOption = None,
    merge: MergeOption = None,
    engine: EngineOption = "auto",
    trust_remote_code: TrustRemoteCodeOption = False,
    uncertainty: UncertaintyOption = Uncertainty.confidence,
    mc_samples: McSamplesOption = 8,
    cascade: CascadeOption = None,
    cascade_adapter: CascadeAdapterOption = None,
    threshold: ThresholdOption = None,
    cascade_mode: CascadeModeOption = None,
    knn: KnnOption = None,
    knn_k: KnnKOption = None,
    knn_lambda: KnnLambdaOption = None,
    knn_temperature: KnnTemperatureOption = None,
    quiet: QuietOption = False,
) -> None:
    """Serve the model over HTTP on this machine: POST /extract, GET /health, GET /info."""
    from ..serve import bind, create_app, http_server, load_service, require_extra, url_of

    require_extra()
    err = stderr_console()
    settings = ExtractSettings(
        lang=lang.value,
        flat=flat,
        max_chunk_tokens=max_chunk_tokens,
        batch_size=batch_size,
        batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS,
        min_score=min_score,
        uncertainty=uncertainty.value,
        mc_samples=mc_samples,
    )
    model_spec = build_model_spec(
        model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter, offline=offline,
        device=device.value, dtype=dtype.value, quantize=quantize.value,
        max_memory=parse_max_memory(max_memory) if max_memory else None, merge=merge,
        trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens, engine=engine, cascade=cascade,
        cascade_adapter=cascade_adapter, threshold=threshold, cascade_mode=cascade_mode.value if cascade_mode else None,
        knn=knn_spec(knn, knn_k, knn_lambda, knn_temperature),
    )  # fmt: skip
    tagger = recognizer_kind(replace(model_spec, cascade=None)) == "tagger"
    advice = None if tagger else note_printer(err, quiet)
    resolved = resolve_labels(LabelSources(labels, labels_file), lang.value, model=model_spec, note=advice)
    task = Task.of(resolved.labels, (), settings)
    if tagger:
        from ..taggers.recognizer import check_tagger_options

        check_tagger_options(replace(model_spec, cascade=None), task)
    if model_spec.knn is not None:
        from ..runs.run import check_knn

        check_knn(model_spec, task)
    if resolved.labels is not None:
        check_prompt_kind(resolved.labels, ())
    serve_settings = ServeSettings(
        host=host,
        port=port,
        batch_wait_ms=batch_wait_ms,
        max_batch_texts=max_batch_texts,
        max_texts=max_texts,
        max_chars=max_chars,
        max_body_bytes=max_body_bytes,
        keep_raw=keep_raw,
    )
    sock = bind(host, port)  # before the model loads: a port in use fails at once
    try:
        with RunView(err, quiet=quiet) as view:
            service = load_service(model_spec, task, serve_settings, auto_batch_tokens=batch_tokens is None,
                                   quiet=quiet, events=view)  # fmt: skip
        server = http_server(create_app(service), sock)
    except BaseException:
        sock.close()
        raise
    typer.echo(f"Serving {url_of(sock)} (POST /extract, GET /health, GET /info); Ctrl-C stops.")
    server.serve()
