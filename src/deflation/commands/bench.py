"""``deflation bench {solvers,throughput}``: the benchmarks of ``benchmarks/`` (see its README)."""


def register(sub):
    p = sub.add_parser("bench", help="benchmarks: solver comparison, throughput against baselines")
    bsub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    for name, help_ in (("solvers", "work-precision comparison of diffrax solvers, optax GD, raw vs log-norm coordinates"),
                        ("throughput", "speed targets: batched flow vs SciPy, flop rate, dense NumPy, memory, float32")):
        q = bsub.add_parser(name, help=help_)
        _module(name).add_arguments(q)
        q.set_defaults(func=_runner(name))
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _module(name):
    import importlib

    return importlib.import_module(f"deflation.bench.{name}")


def _runner(name):
    def run(args):
        return _module(name).run(args)

    return run
