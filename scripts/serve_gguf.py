"""Serve a GGUF chat model with llama.cpp's OpenAI-compatible server, for `RULEBOOK_LLM`.

    python scripts/serve_gguf.py MODEL.gguf [--port 8080] [--alias qwen] [--threads N]

The same server as `python -m llama_cpp.server --model MODEL.gguf`, with one difference: llama.cpp's
AMX repacking of weights is switched off. On CPUs that report AMX (many cloud VMs) that path
crashes on the first completion (`ggml_backend_amx_mul_mat`); without it the plain CPU kernels run.
Needs `pip install "llama-cpp-python[server]==0.3.36"` (the version the figures of eval/REPORT.md were measured with).
"""

from __future__ import annotations

import argparse
import os


def _no_extra_buffer_types() -> None:
    """Make every model load with `use_extra_bufts = False` (the AMX repacking buffers)."""
    import llama_cpp
    import llama_cpp.llama

    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    llama_cpp.llama_model_default_params = params
    llama_cpp.llama.llama_cpp.llama_model_default_params = params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the .gguf file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--alias", default=None, help="the model name clients ask for (default: the file name)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()
    _no_extra_buffer_types()

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    model = ModelSettings(model=args.model, model_alias=args.alias, n_ctx=args.ctx, n_threads=args.threads,
                          verbose=False)
    app = create_app(server_settings=ServerSettings(host=args.host, port=args.port), model_settings=[model])
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
