"""Pool phantom datasets: every case of the extra datalists joins the base datalist's training split.

Validation and test stay the base's, so a model trained on the pool is chosen and scored like one trained on
the base alone. Paths in the output are absolute.

    .venv/bin/python Testing/benchmarks/pool_datalists.py --base brain60/unlabelled.json \
        --extra more31/unlabelled.json --extra more32/unlabelled.json --out pooled_unlabelled.json
"""

from __future__ import annotations

import argparse

from synthlab.datalist import pooled, read_datalist, write_datalist
from synthlab.errors import InputError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="datalist whose validation and test splits are kept")
    parser.add_argument("--extra", action="append", required=True, help="datalist whose every case is added")
    parser.add_argument("--out", required=True, help="the pooled datalist (JSON)")
    arguments = parser.parse_args()
    try:
        splits = pooled(read_datalist(arguments.base), [read_datalist(path) for path in arguments.extra])
    except InputError as error:
        parser.error(str(error))  # one line and exit code 2, as the synthlab commands answer bad input
    write_datalist(splits, arguments.out)
    print(f"{arguments.out}: " + ", ".join(f"{len(splits[name])} {name}" for name in splits))


if __name__ == "__main__":
    main()
