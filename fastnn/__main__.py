"""fastnn (or python -m fastnn): the command line, fastnn/cli/.

    fastnn                      # kernel self-check, then 784-256-128-10 on MNIST, 3 epochs
    fastnn --teaching           # the classic intro: 784-30-10 sigmoid, MSE, plain SGD
    fastnn --check              # kernel self-check only
    fastnn train|evaluate|predict|info|check --help
"""
import sys

from .cli import main
from .cli.check import self_check  # noqa: F401  (fastnn.__main__.self_check, as before)

if __name__ == "__main__":
    sys.exit(main())
