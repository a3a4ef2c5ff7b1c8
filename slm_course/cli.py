"""The `slm-course` command line: build the corpus, run benchmarks, generate exercises.

    slm-course corpus build --out DIR [--utterances N] [--seed S]
    slm-course bench --list
    slm-course bench NAME [--json] [--seed S]
    slm-course exercises [--check]
    slm-course prepare [--jobs N] [--list]
    slm-course doctor [--lock FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _corpus_build(args: argparse.Namespace) -> int:
    from slm_course.corpus import build
    from slm_course.corpus.builder import PAIRS_PER_SET

    m = build(args.out, n_utterances=args.utterances, seed=args.seed, workers=args.workers, progress=not args.quiet,
              pairs_per_set=args.pairs_per_set or PAIRS_PER_SET)
    summary = {
        "out": str(args.out), "utterances": m["utterances"], "speakers": m["speakers"],
        "held_out_speakers": m["held_out_speakers"], "styles": m["styles"], "hours": m["hours"],
        "seconds": m["build_seconds"], "sha256": m["sha256"],
    }
    if not args.quiet:
        print(f"Built {m['utterances']} utterances ({m['hours']:.2f} h) in {m['build_seconds']:.0f} s into {args.out}")
    print(json.dumps(summary))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from slm_course import bench

    if args.list or not args.name:
        for name, about in sorted(bench.available().items()):
            print(f"{name:12s} {about}")
        return 0
    try:
        result = bench.run(args.name, seed=args.seed)
    except (KeyError, ValueError) as err:
        print(err.args[0], file=sys.stderr)
        return 2
    if not args.json:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    print(json.dumps(result))
    return 0


def _exercises(args: argparse.Namespace) -> int:
    from slm_course import exercises

    return exercises.main(["--check"] if args.check else [])


def _prepare(args: argparse.Namespace) -> int:
    from slm_course import prepare

    if args.list:
        for step in prepare.STEPS:
            needs = ", ".join(step.needs) or "-"
            print(f"{step.name:14s} needs {needs:22s} {step.about}")
        return 0
    t0 = time.perf_counter()
    seconds = prepare.prepare(jobs=args.jobs)
    print(json.dumps({"steps": {k: round(v, 1) for k, v in seconds.items()}, "jobs": args.jobs,
                      "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from slm_course import environment

    try:
        info = environment.report(args.lock)
    except (environment.EnvironmentMismatch, FileNotFoundError, ValueError) as err:
        print(f"slm-course doctor: {err}", file=sys.stderr)
        return 1
    lock = f"matches {info['lock']}" if info["lock"] else "no lock file found beside the package: not compared"
    print(f"Python {info['python']}, torch {info['torch']}, torchaudio {info['torchaudio']} (compiled ops load); "
          f"packages: {lock}; CPU: {info['torch_cpu_capability']}")
    print(json.dumps(info))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slm-course", description="Spoken language models from scratch: tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="the synthetic spoken corpus")
    corpus_sub = corpus.add_subparsers(dest="action", required=True)
    b = corpus_sub.add_parser("build", help="build the corpus into a folder; prints a JSON summary last")
    b.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    b.add_argument("--utterances", type=int, default=None, help="training/validation/test utterances")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--pairs-per-set", type=int, default=None, help="pairs in each evaluation set (default 320)")
    b.add_argument("--workers", type=int, default=None, help="synthesis processes (default: up to 2)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_corpus_build)

    bench = sub.add_parser("bench", help="run a benchmark; prints a JSON object last")
    bench.add_argument("name", nargs="?", help="benchmark name (see --list)")
    bench.add_argument("--list", action="store_true", help="list the benchmarks")
    bench.add_argument("--json", action="store_true", help="print only the JSON line")
    bench.add_argument("--seed", type=int, default=0,
                       help="retrain the benchmark's models from this seed, for the spread over seeds (default 0: the "
                            "notebooks' models; a benchmark that takes none says which do)")
    bench.set_defaults(func=_bench)

    ex = sub.add_parser("exercises", help="generate exercises/ from solutions/")
    ex.add_argument("--check", action="store_true", help="only report notebooks that are out of sync")
    ex.set_defaults(func=_exercises)

    prep = sub.add_parser("prepare", help="build every model the notebooks load, ahead of time (one thread each)")
    prep.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    prep.add_argument("--list", action="store_true", help="list the steps and what each needs")
    prep.set_defaults(func=_prepare)

    doc = sub.add_parser("doctor", help="check that torch and torchaudio work together and match the lock")
    doc.add_argument("--lock", default=None, help="lock file (default: requirements.lock.txt beside the package)")
    doc.set_defaults(func=_doctor)

    args = parser.parse_args(argv)
    if getattr(args, "utterances", 0) is None:
        from slm_course.corpus import DEFAULT_UTTERANCES

        args.utterances = DEFAULT_UTTERANCES
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
