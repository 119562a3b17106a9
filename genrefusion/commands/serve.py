"""Serve a trained run: REST API + web page (FastAPI on uvicorn).

  genrefusion serve RUN_DIR                      # http://127.0.0.1:8000/  (web page), /docs (OpenAPI)
  genrefusion serve RUN_DIR --host 0.0.0.0 --port 9000

  GENREFUSION_API_KEY=$(cat key.txt) genrefusion serve RUN_DIR --host 0.0.0.0   # clients send X-API-Key

Endpoints: POST /predict (multipart `poster` file and/or `plot` text), POST /predict/batch (JSON list of
{plot, poster_base64}, at most 64), GET /health, GET /model. Limits: poster <= 10 MB and <= 40 MP, plot
<= 20,000 characters; bad input gets a 4xx JSON error naming the problem.

Access: with an API key ($GENREFUSION_API_KEY, or --api-key), every request but GET /health, the web page
and the API docs must send it (header `X-API-Key: KEY` or `Authorization: Bearer KEY`), else 401; the web
page asks for it once. Without a key anyone who can reach the port can use the API: keep the default
--host 127.0.0.1 then, or put the server behind a proxy that authenticates.

Host check: a request whose Host header names another host gets a 400, so a web page cannot reach the server
through a name of its own that resolves to this machine (DNS rebinding). Listening on a loopback address, the
server answers to localhost, 127.0.0.1, [::1] and the --host address (any port); on any other address, to any
host. --allowed-host NAME (repeatable; *.example.com for subdomains, * for any) replaces that default: name the
host(s) clients use, e.g. behind a reverse proxy that passes Host on."""
from __future__ import annotations

from ..encoders import TEXT_RUNTIMES
from . import add_image_weights, in_range


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run folder (or its model bundle folder)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=in_range(int, 0, 65535, "a port number 0-65535"), default=8000,
                   help="TCP port (default 8000)")
    p.add_argument("--text-runtime", choices=TEXT_RUNTIMES, default=None,
                   help="how MiniLM plot features are computed (as for predict; default auto)")
    add_image_weights(p)
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up prediction at startup")
    p.add_argument("--api-key", metavar="KEY",
                   help="require this key on every request but /health (at least 16 characters; default: "
                        "$GENREFUSION_API_KEY, which keeps it out of the process list)")
    p.add_argument("--allowed-host", metavar="NAME", action="append", default=[],
                   help="answer only requests whose Host header names NAME, any port (repeatable; *.example.com "
                        "for subdomains, * for any; default: localhost, 127.0.0.1, [::1] and the --host address "
                        "when listening on a loopback address, else any host)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default info)")


def run(args) -> int:
    import errno
    import ipaddress
    import os
    import sys

    from ..errors import ConfigError, GenreFusionError
    from ..serve.auth import ENV, check_key, default_hosts, host_pattern

    try:
        import uvicorn
    except ImportError:
        raise GenreFusionError("serve needs FastAPI and uvicorn: pip install 'genrefusion[serve]'") from None
    from ..predict import GenreClassifier
    from ..serve.app import create_app
    from ..serve.server import listen_socket

    api_key = args.api_key if args.api_key is not None else os.environ.get(ENV)
    if api_key == "" and args.api_key is None:  # set but empty: a key was meant, so never serve without one
        raise ConfigError(f"${ENV} is set but empty: set it to a key, or unset it to serve without one")
    if api_key is not None:
        check_key(api_key)  # a bad key is refused before the model is loaded
    for name in args.allowed_host:
        host_pattern(name)  # so is a bad host name
    clf = GenreClassifier.load(args.run_dir, text_runtime=args.text_runtime, image_weights=args.image_weights)
    # bind ourselves so "port in use" is one clear line rather than uvicorn's traceback-free exit(1)
    try:
        sock = listen_socket(args.host, args.port)
    except OSError as err:
        reason = "address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
        raise GenreFusionError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
    host, port = sock.getsockname()[:2]
    try:  # the bound address decides the Host default
        app = create_app(clf, warmup=not args.no_warmup, api_key=api_key,
                         allowed_hosts=default_hosts(host, args.allowed_host, name=args.host))
    except BaseException:
        sock.close()
        raise
    access = "API key required (X-API-Key)" if api_key else "no API key: open to anyone who can reach it"
    print(f"genrefusion: serving {app.state.classifier!r} on http://{host}:{port}/ (API docs: /docs; {access})",
          flush=True)
    if not api_key and not ipaddress.ip_address(host).is_loopback:
        print(f"warning: listening on {host} without an API key; set {ENV} (or --api-key) to require one",
              file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
