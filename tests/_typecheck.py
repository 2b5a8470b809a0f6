"""The runtime type checker the test suite applies to every function and dataclass of the package
(jaxtyping's import hook, see conftest.py): beartype, with ``int`` accepted where ``float`` is
annotated (PEP 484's numeric tower)."""

from beartype import BeartypeConf, beartype

typecheck = beartype(conf=BeartypeConf(is_pep484_tower=True))
