"""The command line: `fastnn` (the console script) and `python -m fastnn`.

    fastnn [TRAIN OPTIONS]          the main job: kernel self-check, then train on MNIST and report
    fastnn train [...]              fastnn/cli/train.py
    fastnn evaluate MODEL [DATA]    fastnn/cli/evaluate.py
    fastnn predict MODEL DATA       fastnn/cli/predict.py
    fastnn info MODEL               fastnn/cli/info.py
    fastnn check                    fastnn/cli/check.py

One module per subcommand, each with NAME, HELP, DESCRIPTION, EPILOG, add_arguments(parser) and
run(args) -> exit status; fastnn/cli/_common.py holds the errors, data reading and model files.
The subcommands translate to the model API and back: they neither train nor validate arrays
themselves. A user's mistake is one line on stderr and exit status 2 (usage) or 1 (data or
model); --debug adds the traceback.
"""
import sys
import traceback

from . import _common as c
from . import check, evaluate, info, predict, train

COMMANDS = {m.NAME: m for m in (train, evaluate, predict, info, check)}

DESCRIPTION = """\
fastnn: train multi-layer perceptrons on the CPU.

Without a command, fastnn checks its compiled kernels against the NumPy oracle and trains the
default network on MNIST (784-256-128-10, relu, Adam, 3 epochs), printing each epoch and the test
accuracy; it takes the options of `fastnn train` (but saves nothing unless given --output), and
--check to run the self-check alone."""
EPILOG = """\
examples:
  fastnn                                   # self-check, then MNIST
  fastnn --teaching                        # the classic 784-30-10 sigmoid network
  fastnn --check                           # kernel self-check only (= fastnn check)
  fastnn train --data iris.csv --target species -o iris.safetensors
  fastnn evaluate iris.safetensors iris.csv
  fastnn predict iris.safetensors new.csv --proba
  fastnn info iris.safetensors

`fastnn COMMAND --help` shows each command's options and examples."""


def _parser():
    p = c.Parser(prog="fastnn", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"fastnn {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=c.Parser)
    for name, m in COMMANDS.items():
        sp = sub.add_parser(name, help=m.HELP, description=m.DESCRIPTION, epilog=m.EPILOG)
        m.add_arguments(sp)
        sp.set_defaults(run=m.run)
    return p


def _version():
    from .. import __version__
    return __version__


def _main_job_parser():
    p = c.Parser(prog="fastnn", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"fastnn {_version()}")
    p.add_argument("--check", action="store_true", help="the kernel self-check only (as `fastnn check`)")
    train.add_arguments(p, default_output=None)
    return p


def _main_job(args):
    if args.check:
        return check.run(args)
    status = check.run(args)
    if status:
        return status
    return train.run(args)


def _run(argv):
    if argv and argv[0] in COMMANDS or argv[:1] in (["-h"], ["--help"]):
        args = _parser().parse_args(argv)
        return args.run(args), f"fastnn {args.command}"
    if argv and not argv[0].startswith("-"):
        _parser().error(f"unknown command {argv[0]!r} (choose from {', '.join(COMMANDS)})")
    args = _main_job_parser().parse_args(argv)
    return _main_job(args), "fastnn"


def main(argv=None):
    """Run the command line with argv (default: sys.argv[1:]); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    prog = "fastnn" + (f" {argv[0]}" if argv and argv[0] in COMMANDS else "")
    try:
        status, prog = _run(argv)
        return status
    except c.CLIError as exc:
        if debug:
            exc.__suppress_context__ = False  # show the error it was translated from too
            traceback.print_exception(type(exc), exc, exc.__traceback__)
        kind = "" if isinstance(exc, c.Interrupted) else "error: "
        print(f"{prog}: {kind}{exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        return c.EXIT_INTERRUPTED
    except BrokenPipeError:  # `fastnn predict ... | head`: the reader has gone
        import os
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except Exception as exc:  # not a mistake of the user's: still one line, unless --debug
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {type(exc).__name__}: {exc} (unexpected: --debug shows the traceback)",
              file=sys.stderr)
        return 1
