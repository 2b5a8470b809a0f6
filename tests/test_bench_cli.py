"""``deflation bench`` is registered and parses its options (the benchmarks themselves are not run here)."""

from deflation.cli import build_parser


def test_bench_commands_parse():
    p = build_parser()
    a = p.parse_args(["bench", "solvers", "--quick", "--only", "figure1"])
    assert a.quick and a.only == "figure1" and callable(a.func)
    b = p.parse_args(["bench", "throughput", "--seeds", "65536", "--chunk", "4096"])
    assert b.seeds == 65536 and b.chunk == 4096 and callable(b.func)


def test_bench_summary_lines_format():
    from deflation.bench.throughput import summary_line

    line = summary_line("dense", {"vf_s": 1e-5, "vf_in_loop_s": 2e-6, "numpy_dense_gradient_s": 1e-1, "ratio": 1e4,
                                  "ratio_in_loop": 5e4, "ratio_numpy_gram": 10.0})
    assert "10000x" in line and "50000x" in line
