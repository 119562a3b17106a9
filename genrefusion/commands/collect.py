"""Collect titles (poster, plot, genres) into the canonical dataset layout, the way the paper did.

Sources: imdb-pages (saved IMDb title pages, offline), imdb (fetch IMDb title pages and posters by
tt-id: rate-limited, cached, resumable), tmdb (the TMDB API, key in an environment variable) and
imdb-tsv (IMDb's non-commercial title.basics.tsv.gz: the recommended source of genres).

IMDb's conditions of use restrict automated collection: you are responsible for having the right to
fetch what you collect. See docs/collect.md.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

IMDB_BASE = "https://www.imdb.com"
TMDB_API = "https://api.themoviedb.org/3"
TMDB_IMAGES = "https://image.tmdb.org/t/p"


def _common_out(p):
    p.add_argument("--out", required=True, metavar="DATASET", help="folder to write the dataset into")
    p.add_argument("--name", help="dataset name in dataset.json (default: the folder name)")
    p.add_argument("--force", action="store_true", help="overwrite a dataset already at --out")
    p.add_argument("--require", action="append", choices=("poster", "plot"), default=[],
                   help="skip titles without a usable poster / plot (repeatable; default: keep them)")


def _common_http(p, rate: float, base_url: str | None):
    g = p.add_argument_group("HTTP (shared polite client)")
    g.add_argument("--cache", metavar="DIR",
                   help="response cache; a re-run fetches nothing twice (default: $GENREFUSION_CACHE/http)")
    g.add_argument("--rate", type=float, default=rate,
                   help=f"max requests per second over the network; cache hits are free (default {rate})")
    if base_url is not None:
        g.add_argument("--base-url", default=base_url, help=f"server to ask (default {base_url})")
    g.add_argument("--retries", type=int, default=4, help="retries on 429/5xx/timeouts/truncated bodies (default 4)")
    g.add_argument("--backoff", type=float, default=2.0, help="first retry delay in s, doubling (default 2)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")
    g.add_argument("--max-failures", type=int, default=10,
                   help="stop after this many failed requests in a row (default 10)")
    g.add_argument("--user-agent", help="User-Agent header (default: genrefusion/<version> + what it does); "
                   "add a contact address for large crawls")


def add_arguments(p):
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)

    q = sub.add_parser("imdb-pages", help="saved IMDb title pages (offline)",
                       description="Parse saved IMDb title pages (the page's own __NEXT_DATA__ first, its JSON-LD "
                                   "summary only where that lacks a field). Posters are taken from <page>.jpg, "
                                   "<tt-id>.jpg or <page>_files/ beside each page.")
    q.add_argument("pages", metavar="DIR", help="folder of saved title pages (.html/.htm), or one page")
    _common_out(q)
    q.add_argument("--fetch-posters", action="store_true",
                   help="download posters not saved beside the pages (uses the HTTP options below)")
    q.add_argument("--image-base-url", help="fetch posters from this host instead of the page's image host")
    _common_http(q, 1.0, None)

    q = sub.add_parser("imdb", help="fetch IMDb title pages and posters by tt-id",
                       description="Fetch IMDb title pages + posters for the tt-ids in IDS_FILE (one a line). "
                                   "IMDb's conditions of use restrict automated collection: you are responsible "
                                   "for having the right to fetch. Prefer `collect imdb-tsv` for genres.")
    q.add_argument("ids", metavar="IDS_FILE", help="tt-ids (or IMDb title URLs), one a line, # comments")
    _common_out(q)
    q.add_argument("--image-base-url", help="fetch posters from this host instead of the page's image host")
    _common_http(q, 1.0, IMDB_BASE)

    q = sub.add_parser("tmdb", help="the TMDB API (overview, genres mapped to IMDb names, poster)",
                       description="Collect from the TMDB API by IMDb id (via /find) or TMDB id.")
    q.add_argument("ids", metavar="IDS_FILE",
                   help="one id a line: tt-ids with --by imdb; 550, movie:550 or tv:1399 with --by tmdb")
    _common_out(q)
    q.add_argument("--api-key-env", default="TMDB_API_KEY", metavar="VAR",
                   help="environment variable holding the TMDB v3 API key or v4 token (default TMDB_API_KEY)")
    q.add_argument("--by", choices=("imdb", "tmdb"), default="imdb", help="what the ids are (default imdb)")
    q.add_argument("--kind", choices=("movie", "tv"),
                   help="--by tmdb: kind of bare ids (default movie); --by imdb: kind preferred by /find")
    q.add_argument("--image-base-url", default=TMDB_IMAGES, help=f"TMDB image server (default {TMDB_IMAGES})")
    q.add_argument("--poster-size", default="w342", help="TMDB poster width (default w342: >= 384 px tall)")
    _common_http(q, 1.0, TMDB_API)

    q = sub.add_parser("imdb-tsv", help="attach genres/kind/year from IMDb's title.basics.tsv.gz",
                       description="Join IMDb's non-commercial title.basics.tsv.gz (streamed) to tt-ids or to "
                                   "an existing dataset, replacing its genres with IMDb's.")
    q.add_argument("tsv", metavar="TITLE_BASICS", help="title.basics.tsv.gz (or an unzipped .tsv)")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--ids", metavar="FILE",
                     help="tt-ids, one a line: genre/kind/year records only (a label table, not trainable)")
    src.add_argument("--dataset", metavar="DIR", help="a dataset whose posters and plots are kept")
    _common_out(q)


# (option, lowest allowed, highest allowed, lowest included): a timeout of inf or 1e12 s overflows the
# socket layer, and no polite crawl needs more than these
LIMITS = (("rate", 0, 1000, False), ("timeout", 0, 3600, False), ("backoff", 0, 3600, True),
          ("retries", 0, 100, True), ("max_failures", 1, 10**6, True))


def _client(args, robots: bool = False, **secrets):
    from ..collect.http import DEFAULT_USER_AGENT, HttpClient
    from ..paths import cache_dir

    from ..errors import ConfigError

    cache = Path(args.cache) if args.cache else cache_dir() / "http"
    for name, lo, hi, lo_ok in LIMITS:
        val = getattr(args, name)
        # math.isfinite refuses nan/inf; requests would raise a bare ValueError on a zero timeout
        if not (math.isfinite(val) and (lo <= val if lo_ok else lo < val) and val <= hi):
            raise ConfigError(f"--{name.replace('_', '-')}: out of range ({val}; expected a number "
                              f"{'>=' if lo_ok else '>'} {lo} and <= {hi})")
    return HttpClient(cache_dir=cache, rate=args.rate, user_agent=args.user_agent or DEFAULT_USER_AGENT,
                      timeout=args.timeout, retries=args.retries, backoff=args.backoff, robots=robots, **secrets)


def run(args) -> int:
    from ..collect.common import Report, check_out, finish_failed, summary
    from ..collect.http import check_url
    from ..collect.imdb_tsv import check_distinct

    # a mistyped server fails here, in one line, before any request or output folder
    for opt in ("base_url", "image_base_url"):
        if getattr(args, opt, None):
            check_url(getattr(args, opt), "--" + opt.replace("_", "-"))
    if getattr(args, "dataset", None):
        check_distinct(args.out, args.dataset)
    out = check_out(args.out, args.force)
    created, report = not out.exists(), Report()
    try:
        n, report, stats = _collect(args, out, report)
    except BaseException as err:
        finish_failed(out, created, report, err)
        raise
    print(summary(n, out, report, stats))
    if args.source == "imdb-tsv" and args.ids:
        print("note: --ids writes genre/kind/year records only (no posters or plots): a label table, not a "
              "trainable dataset; use --dataset to attach IMDb genres to titles with posters and plots",
              file=sys.stderr)
    if report.skipped:
        print(f"skipped titles are listed in {out / 'collect_report.json'}", file=sys.stderr)
    return 0


def _collect(args, out: Path, report):
    """Run the chosen collector into ``report``; returns (titles written, report, HTTP stats or None)."""
    stats = None
    if args.source == "imdb-pages":
        from ..collect.imdb_pages import collect_imdb_pages

        client = _client(args, robots=True) if args.fetch_posters else None
        n, report = collect_imdb_pages(args.pages, out, name=args.name, force=args.force, require=args.require,
                                       client=client, image_base_url=args.image_base_url,
                                       max_failures=args.max_failures, report=report)
        stats = client.stats if client else None
    elif args.source == "imdb":
        from ..collect.imdb_fetch import collect_imdb

        client = _client(args, robots=True)
        n, report = collect_imdb(args.ids, out, client, base_url=args.base_url, image_base_url=args.image_base_url,
                                 name=args.name, force=args.force, require=args.require,
                                 max_failures=args.max_failures, report=report)
        stats = client.stats
    elif args.source == "tmdb":
        from ..collect.tmdb import TmdbClient, api_key_from_env, auth_for, collect_tmdb

        params, headers = auth_for(api_key_from_env(args.api_key_env))
        # the key goes to the API's host only: never to the image host
        client = _client(args, secret_params=params, secret_headers=headers, secret_origin=args.base_url)
        tmdb = TmdbClient(client, base_url=args.base_url, image_base_url=args.image_base_url,
                          poster_size=args.poster_size)
        n, report = collect_tmdb(args.ids, out, tmdb, by=args.by, kind=args.kind, name=args.name, force=args.force,
                                 require=args.require, max_failures=args.max_failures, report=report)
        stats = client.stats
    else:
        from ..collect.imdb_tsv import collect_tsv

        n, report = collect_tsv(args.tsv, out, ids_file=args.ids, dataset=args.dataset, name=args.name,
                                force=args.force, require=args.require, report=report)
    return n, report, stats
