"""``deflation figure1``: the paper's Figure 1 (placeholder until the job lands)."""


def register(sub):
    p = sub.add_parser("figure1", help="reproduce the paper's Figure 1")
    p.set_defaults(func=lambda args: print("figure1: not yet implemented"))
