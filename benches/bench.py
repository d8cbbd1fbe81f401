"""Developer entry point of the benchmark: `python benches/bench.py [options]`.

The same harness and options as `python -m ferroptim bench` (see benches/README.md).
"""

import sys

from ferroptim._bench import main

if __name__ == "__main__":
    sys.exit(main())
